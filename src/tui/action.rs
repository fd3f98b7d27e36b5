//! Everything a key can ask the explorer to do. Keys are mapped once to an [`Action`]
//! ([`super::keymap`]); the app then handles actions in one `match`.

/// A user command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Leave the explorer (cancels downloads).
    Quit,
    /// Focus the next pane.
    NextPane,
    /// Focus the previous pane.
    PrevPane,
    /// Move up one row.
    Up,
    /// Move down one row.
    Down,
    /// Tree: collapse the directory or go to its parent.
    Left,
    /// Tree: expand the directory.
    Right,
    /// Move up one page.
    PageUp,
    /// Move down one page.
    PageDown,
    /// First row.
    Home,
    /// Last row.
    End,
    /// Edit the live path filter.
    Filter,
    /// Type a search pattern.
    Search,
    /// Next search match.
    SearchNext,
    /// Previous search match.
    SearchPrev,
    /// Show what the selected layer changed (dive's "compare layer").
    CompareLayer,
    /// Show everything changed since the base layer (dive's "compare all").
    CompareAll,
    /// Collapse or expand the directory under the cursor.
    ToggleCollapse,
    /// Collapse or expand every directory.
    ToggleCollapseAll,
    /// Hide or show added paths.
    ToggleAdded,
    /// Hide or show removed paths.
    ToggleRemoved,
    /// Hide or show modified paths.
    ToggleModified,
    /// Hide or show unmodified paths (only-changes mode).
    ToggleUnmodified,
    /// Show or hide the permission, owner and size columns.
    ToggleAttributes,
    /// Sort by name or by size.
    ToggleSort,
    /// Compare mode: show the differences with the second image.
    ToggleCompare,
    /// Open the selected file, or jump to the selected inefficient file.
    Open,
    /// Close the viewer, help or prompt.
    Back,
    /// Show or hide the key help.
    Help,
    /// Open or close the Findings view (wasted bytes and their fixes).
    Findings,
    /// Save the selected file, or the selected directory as a tar, into the current directory.
    SaveFile,
}
