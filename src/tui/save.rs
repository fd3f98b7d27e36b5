//! The save key (dive's `extract-file`, Ctrl+E in the File tree): the selected file's bytes, or
//! the selected directory as a tar, as of the layer shown, into the current directory.
//!
//! A prompt in the status line shows the name it will get (the file's name, a directory's
//! with `.tar`) and lets the user change it; Enter saves, Esc cancels. A name that exists is
//! not overwritten until Enter is pressed a second time on the warning. The work runs outside
//! the UI loop ([`Effect::Save`]) through the same code as `layerscope cat` and `layerscope
//! export`: the bytes are checked against the index and the file appears only once complete.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::escape::{escape_bytes, escape_str};
use crate::tree::{ChangeKind, EntryKind, NodeId};
use crate::unpack::save::Saved;

use super::app::{App, Effect};
use super::ui::human_size;

/// The save prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavePrompt {
    /// What is saved.
    pub node: NodeId,
    /// As of this layer.
    pub layer: usize,
    /// A directory, saved as a tar.
    pub is_dir: bool,
    /// Its path in the image, escaped for the screen.
    pub image_path: String,
    /// The file name being edited (relative names go to the current directory).
    pub name: String,
    /// The name exists and the next Enter overwrites it.
    pub confirm: bool,
}

/// Open the prompt for the row under the cursor, or say why it cannot be saved.
pub fn start(app: &mut App) {
    if app.compare.as_ref().is_some_and(|c| c.active) {
        app.notice = Some("saving works in the file tree, not in the compare list".to_string());
        return;
    }
    let (Some(row), Some(layer)) = (app.view.selected(), app.view.layer()) else {
        return;
    };
    let tree = app.tree.clone();
    let tree = super::app::read(&tree);
    if row.kind == ChangeKind::Removed {
        app.notice = Some("removed at this layer: select a lower layer to save it".to_string());
        return;
    }
    let is_dir = match tree.entry_at(row.node, layer).map(|e| e.kind()) {
        Some(EntryKind::Dir) => true,
        Some(EntryKind::File | EntryKind::Hardlink)
            if tree.content_location(row.node, layer).is_some() =>
        {
            false
        }
        _ => {
            app.notice = Some("only regular files and directories can be saved".to_string());
            return;
        }
    };
    let base = escape_bytes(tree.name(row.node)).into_owned();
    let name = match (is_dir, base.is_empty()) {
        (true, true) => "rootfs.tar".to_string(),
        (true, false) => format!("{base}.tar"),
        (false, _) => base,
    };
    app.save = Some(SavePrompt {
        node: row.node,
        layer,
        is_dir,
        image_path: escape_bytes(&tree.path(row.node)).into_owned(),
        name,
        confirm: false,
    });
}

/// A key while the prompt is open.
pub fn on_key(app: &mut App, key: KeyEvent) {
    let Some(prompt) = app.save.as_mut() else {
        return;
    };
    match key.code {
        KeyCode::Esc => {
            app.save = None;
            app.notice = Some("not saved".to_string());
        }
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => app.quit = true,
        KeyCode::Enter => enter(app),
        KeyCode::Backspace => {
            prompt.name.pop();
            prompt.confirm = false;
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
            prompt.name.push(c);
            prompt.confirm = false;
        }
        _ => {}
    }
}

/// Enter: save, or ask first when the name exists.
fn enter(app: &mut App) {
    let Some(prompt) = app.save.as_mut() else {
        return;
    };
    if prompt.name.is_empty() {
        app.notice = Some("type a file name, or esc".to_string());
        return;
    }
    let dest = match std::env::current_dir() {
        Ok(dir) => dir.join(&prompt.name),
        Err(e) => {
            app.notice = Some(format!("no current directory: {e}"));
            return;
        }
    };
    let overwrite = match std::fs::symlink_metadata(&dest) {
        Ok(meta) if meta.is_dir() => {
            app.notice = Some(format!("{} is a directory: type another name", prompt.name));
            return;
        }
        Ok(_) if !prompt.confirm => {
            prompt.confirm = true;
            return;
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let effect = Effect::Save {
        node: prompt.node,
        layer: prompt.layer,
        dest,
        overwrite,
    };
    app.notice = Some(format!("saving {}…", escape_str(&prompt.name)));
    app.save = None;
    app.push_effect(effect);
}

/// The status line while the prompt is open.
pub fn status(app: &App) -> Option<String> {
    let prompt = app.save.as_ref()?;
    let name = escape_str(&prompt.name);
    Some(if prompt.confirm {
        format!(" {name} exists: enter overwrites it, esc keeps it")
    } else {
        format!(
            " Save {}{} (layer {}) as: {name}▏  enter/esc",
            prompt.image_path,
            if prompt.is_dir { " as a tar" } else { "" },
            prompt.layer
        )
    })
}

/// A save ended: say where it went, or why it failed.
pub fn finished(app: &mut App, result: Result<Saved, String>) {
    app.notice = Some(match result {
        Ok(saved) if saved.tar => format!(
            "saved {} ({} files, {})",
            escape_str(&saved.path.display().to_string()),
            saved.files,
            human_size(saved.bytes)
        ),
        Ok(saved) => format!(
            "saved {} ({})",
            escape_str(&saved.path.display().to_string()),
            human_size(saved.bytes)
        ),
        Err(e) => format!("not saved: {}", escape_str(&e)),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, RwLock};

    use crossterm::event::Event as TermEvent;
    use ratatui::layout::Rect;

    use super::*;
    use crate::pipeline::Event as PipelineEvent;
    use crate::tui::action::Action;
    use crate::tui::event::Message;
    use crate::tui::keymap::Keymap;
    use crate::tui::testing::image_for;
    use crate::tui::theme::Theme;

    fn app() -> App {
        let (info, tree) = image_for(&[&[
            ("etc/", None),
            ("etc/hosts", Some(b"127.0.0.1 localhost\n")),
        ]]);
        let mut app = App::new(
            info.reference.clone(),
            Arc::new(RwLock::new(tree)),
            Keymap::defaults(),
            Theme { color: false },
            Rect::new(0, 0, 100, 30),
        );
        app.update(Message::Pipeline(PipelineEvent::Resolved(info)));
        app.update(Message::Pipeline(PipelineEvent::LayerMerged(0)));
        app.update(Message::Pipeline(PipelineEvent::Finished));
        app
    }

    fn key(app: &mut App, code: KeyCode) {
        app.update(Message::Input(TermEvent::Key(KeyEvent::new(
            code,
            KeyModifiers::NONE,
        ))));
    }

    #[test]
    fn the_prompt_offers_the_name_and_lets_it_change() {
        let mut app = app();
        app.apply(Action::NextPane);
        // The first row is etc/: a directory, saved as a tar.
        app.apply(Action::SaveFile);
        let prompt = app.save.clone().unwrap();
        assert!(prompt.is_dir);
        assert_eq!(prompt.name, "etc.tar");
        assert!(status(&app)
            .unwrap()
            .contains("Save /etc as a tar (layer 0) as: etc.tar"));
        key(&mut app, KeyCode::Esc);
        assert!(app.save.is_none());

        app.apply(Action::Down);
        app.apply(Action::SaveFile);
        assert_eq!(app.save.as_ref().unwrap().name, "hosts");
        for _ in 0..5 {
            key(&mut app, KeyCode::Backspace);
        }
        for c in "h2".chars() {
            key(&mut app, KeyCode::Char(c));
        }
        let prompt = app.save.clone().unwrap();
        assert_eq!(prompt.name, "h2");
        assert!(!prompt.is_dir);
        assert!(app.take_effects().is_empty(), "nothing until enter");
    }
}
