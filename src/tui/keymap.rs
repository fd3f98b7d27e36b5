//! Key bindings as data (trippy's habit): every action has a name and a list of keys written as
//! strings (`"ctrl+f"`, `"pgdn"`, `"?"`), parsed once into a lookup table. The same table
//! drives the help overlay, the README's key table and the sample `assets/keymap.yaml`, so
//! none of them can drift from what the keys really do.
//!
//! The defaults are dive's. dive binds Ctrl+A twice: "compare all" in its layer view and
//! "toggle added files" in its file view. Bindings here have a scope for the same reason: a
//! key is looked up first in the focused pane's scope, then in the global one, so Ctrl+A
//! switches to the aggregated view when the Layers pane has focus and hides added files when
//! the File tree has focus. Ctrl+L (layer changes) is global.
//!
//! Overrides come from `keys.yaml` in the config directory (`$LAYERSCOPE_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/layerscope`, else `~/.config/layerscope`): a map from action name to a key
//! or a list of keys, replacing that action's defaults. Unknown actions and unknown key names
//! are refused with a one-line error.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use yaml_rust2::{Yaml, YamlLoader};

use super::action::Action;

/// Where a binding applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everywhere (unless the focused pane binds the same key).
    Global,
    /// When the Layers pane has focus.
    Layers,
    /// When the File tree pane has focus.
    Tree,
}

impl Scope {
    /// The heading used in help and docs.
    pub fn label(self) -> &'static str {
        match self {
            Scope::Global => "Everywhere",
            Scope::Layers => "Layers pane",
            Scope::Tree => "File tree",
        }
    }
}

/// One key with its modifiers, as compared against terminal events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyCombo {
    code: KeyCode,
    ctrl: bool,
    alt: bool,
}

impl KeyCombo {
    /// The combo a terminal key event stands for. Shift is folded into the character
    /// (`N`), and Shift+Tab is `BackTab`.
    pub fn from_event(event: &KeyEvent) -> KeyCombo {
        let code = match event.code {
            KeyCode::Char(c) if event.modifiers.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            other => other,
        };
        KeyCombo {
            code,
            ctrl: event.modifiers.contains(KeyModifiers::CONTROL),
            alt: event.modifiers.contains(KeyModifiers::ALT),
        }
    }

    /// Parse `"ctrl+f"`, `"shift+tab"`, `"pgdn"`, `"N"`, `"?"`.
    pub fn parse(text: &str) -> Result<KeyCombo, String> {
        let text = text.trim();
        let (mods, key) = match text.rfind('+') {
            // A lone "+" is the plus key.
            Some(i) if i + 1 < text.len() => (&text[..i], &text[i + 1..]),
            _ => ("", text),
        };
        let (mut ctrl, mut alt, mut shift) = (false, false, false);
        for m in mods.split('+').filter(|m| !m.is_empty()) {
            match m.to_ascii_lowercase().as_str() {
                "ctrl" | "control" => ctrl = true,
                "alt" | "meta" => alt = true,
                "shift" => shift = true,
                other => return Err(format!("unknown modifier '{other}' in key '{text}'")),
            }
        }
        let named = match key.to_ascii_lowercase().as_str() {
            "tab" if shift => Some(KeyCode::BackTab),
            "tab" => Some(KeyCode::Tab),
            "backtab" => Some(KeyCode::BackTab),
            "enter" | "return" => Some(KeyCode::Enter),
            "esc" | "escape" => Some(KeyCode::Esc),
            "space" => Some(KeyCode::Char(' ')),
            "up" => Some(KeyCode::Up),
            "down" => Some(KeyCode::Down),
            "left" => Some(KeyCode::Left),
            "right" => Some(KeyCode::Right),
            "pgup" | "pageup" => Some(KeyCode::PageUp),
            "pgdn" | "pagedown" => Some(KeyCode::PageDown),
            "home" => Some(KeyCode::Home),
            "end" => Some(KeyCode::End),
            "backspace" => Some(KeyCode::Backspace),
            "delete" | "del" => Some(KeyCode::Delete),
            "insert" => Some(KeyCode::Insert),
            f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                f[1..].parse::<u8>().ok().map(KeyCode::F)
            }
            _ => None,
        };
        let code = match named {
            Some(code) => code,
            None => {
                let mut chars = key.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_control() => {
                        if ctrl {
                            KeyCode::Char(c.to_ascii_lowercase())
                        } else if shift {
                            KeyCode::Char(c.to_ascii_uppercase())
                        } else {
                            KeyCode::Char(c)
                        }
                    }
                    _ => return Err(format!("unknown key '{text}'")),
                }
            }
        };
        Ok(KeyCombo { code, ctrl, alt })
    }
}

/// One action's binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The action.
    pub action: Action,
    /// Its name in `keys.yaml` (dive's name where dive has the action).
    pub name: &'static str,
    /// Where it applies.
    pub scope: Scope,
    /// The keys as written (`"ctrl+f"`).
    pub keys: Vec<String>,
    /// What it does, for the help overlay.
    pub help: &'static str,
}

/// The defaults: name, action, scope, keys, help. dive's names and keys where dive has them.
const DEFAULTS: &[(&str, Action, Scope, &[&str], &str)] = &[
    (
        "quit",
        Action::Quit,
        Scope::Global,
        &["q", "ctrl+c"],
        "quit (cancels downloads)",
    ),
    (
        "toggle-view",
        Action::NextPane,
        Scope::Global,
        &["tab"],
        "next pane",
    ),
    (
        "toggle-view-back",
        Action::PrevPane,
        Scope::Global,
        &["shift+tab"],
        "previous pane",
    ),
    ("up", Action::Up, Scope::Global, &["up", "k"], "up"),
    ("down", Action::Down, Scope::Global, &["down", "j"], "down"),
    (
        "left",
        Action::Left,
        Scope::Global,
        &["left", "h"],
        "collapse / to parent",
    ),
    (
        "right",
        Action::Right,
        Scope::Global,
        &["right", "l"],
        "expand directory",
    ),
    (
        "page-up",
        Action::PageUp,
        Scope::Global,
        &["pgup"],
        "page up",
    ),
    (
        "page-down",
        Action::PageDown,
        Scope::Global,
        &["pgdn"],
        "page down",
    ),
    (
        "home",
        Action::Home,
        Scope::Global,
        &["home", "g"],
        "first row",
    ),
    ("end", Action::End, Scope::Global, &["end", "G"], "last row"),
    (
        "filter-files",
        Action::Filter,
        Scope::Global,
        &["ctrl+f"],
        "filter paths (regex)",
    ),
    (
        "search",
        Action::Search,
        Scope::Global,
        &["/"],
        "search paths",
    ),
    (
        "search-next",
        Action::SearchNext,
        Scope::Global,
        &["n"],
        "next match",
    ),
    (
        "search-prev",
        Action::SearchPrev,
        Scope::Global,
        &["N"],
        "previous match",
    ),
    (
        "compare-layer",
        Action::CompareLayer,
        Scope::Global,
        &["ctrl+l"],
        "this layer's changes",
    ),
    (
        "toggle-compare",
        Action::ToggleCompare,
        Scope::Global,
        &["c"],
        "compare view (--compare)",
    ),
    (
        "open",
        Action::Open,
        Scope::Global,
        &["enter"],
        "open file / jump to it",
    ),
    (
        "close",
        Action::Back,
        Scope::Global,
        &["esc"],
        "close / clear filter",
    ),
    ("help", Action::Help, Scope::Global, &["?"], "this help"),
    (
        "findings",
        Action::Findings,
        Scope::Global,
        &["F"],
        "findings: waste and fixes",
    ),
    (
        "compare-all",
        Action::CompareAll,
        Scope::Layers,
        &["ctrl+a"],
        "aggregated since base",
    ),
    (
        "toggle-collapse-dir",
        Action::ToggleCollapse,
        Scope::Tree,
        &["space"],
        "collapse / expand dir",
    ),
    (
        "toggle-collapse-all-dir",
        Action::ToggleCollapseAll,
        Scope::Tree,
        &["ctrl+space"],
        "collapse / expand all",
    ),
    (
        "toggle-added-files",
        Action::ToggleAdded,
        Scope::Tree,
        &["ctrl+a"],
        "hide / show added",
    ),
    (
        "toggle-removed-files",
        Action::ToggleRemoved,
        Scope::Tree,
        &["ctrl+r"],
        "hide / show removed",
    ),
    (
        "toggle-modified-files",
        Action::ToggleModified,
        Scope::Tree,
        // Most terminals send Ctrl+M as Enter (which opens files): Alt+M works in all of them.
        &["ctrl+m", "alt+m"],
        "hide / show modified",
    ),
    (
        "toggle-unmodified-files",
        Action::ToggleUnmodified,
        Scope::Tree,
        &["ctrl+u"],
        "only changes on / off",
    ),
    (
        "toggle-filetree-attributes",
        Action::ToggleAttributes,
        Scope::Tree,
        &["ctrl+b"],
        "show / hide attributes",
    ),
    (
        "toggle-sort-order",
        Action::ToggleSort,
        Scope::Tree,
        &["ctrl+o"],
        "sort by name / size",
    ),
    (
        // dive's name and key for the same action.
        "extract-file",
        Action::SaveFile,
        Scope::Tree,
        &["ctrl+e"],
        "save file / dir as tar",
    ),
];

/// The parsed bindings.
#[derive(Clone, Debug)]
pub struct Keymap {
    bindings: Vec<Binding>,
    table: HashMap<(Scope, KeyCombo), Action>,
}

impl Keymap {
    /// dive's defaults.
    pub fn defaults() -> Keymap {
        let bindings = DEFAULTS
            .iter()
            .map(|(name, action, scope, keys, help)| Binding {
                action: *action,
                name,
                scope: *scope,
                keys: keys.iter().map(|k| k.to_string()).collect(),
                help,
            })
            .collect();
        // The defaults parse and do not clash (a unit test checks it); fall back to an empty
        // table rather than panic if that ever broke.
        Keymap::from_bindings(bindings).unwrap_or_else(|_| Keymap {
            bindings: Vec::new(),
            table: HashMap::new(),
        })
    }

    fn from_bindings(bindings: Vec<Binding>) -> Result<Keymap, String> {
        let mut table = HashMap::new();
        let mut names: HashMap<(Scope, KeyCombo), &str> = HashMap::new();
        for b in &bindings {
            for key in &b.keys {
                let combo = KeyCombo::parse(key).map_err(|e| format!("{}: {e}", b.name))?;
                // A key may mean different things in different panes, never two in one.
                let clashes = [b.scope, Scope::Global]
                    .into_iter()
                    .chain(if b.scope == Scope::Global {
                        vec![Scope::Layers, Scope::Tree]
                    } else {
                        vec![]
                    })
                    .find_map(|s| names.get(&(s, combo)).copied());
                if let Some(other) = clashes {
                    return Err(format!(
                        "key '{key}' is bound to both '{other}' and '{}'",
                        b.name
                    ));
                }
                names.insert((b.scope, combo), b.name);
                table.insert((b.scope, combo), b.action);
            }
        }
        Ok(Keymap { bindings, table })
    }

    /// The defaults with the overrides of a `keys.yaml` text applied.
    pub fn from_yaml(text: &str) -> Result<Keymap, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let mut bindings = Keymap::defaults().bindings;
        let map = match docs.into_iter().next() {
            None | Some(Yaml::Null) => return Keymap::from_bindings(bindings),
            Some(Yaml::Hash(h)) => h,
            Some(_) => return Err("expected a map of action: keys".to_string()),
        };
        for (name, value) in map {
            let Some(name) = name.as_str() else {
                return Err("action names must be strings".to_string());
            };
            let Some(binding) = bindings.iter_mut().find(|b| b.name == name) else {
                return Err(format!("unknown action '{name}'"));
            };
            let keys: Vec<String> = match value {
                Yaml::String(s) => vec![s],
                Yaml::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Yaml::String(s) => Ok(s),
                        _ => Err(format!("{name}: keys must be strings")),
                    })
                    .collect::<Result<_, _>>()?,
                Yaml::Null => Vec::new(),
                _ => return Err(format!("{name}: expected a key or a list of keys")),
            };
            binding.keys = keys;
        }
        Keymap::from_bindings(bindings)
    }

    /// The defaults with the user's `keys.yaml` applied, if there is one. Errors name the
    /// file and say why, on one line.
    pub fn load() -> Result<Keymap, String> {
        let Some(path) = config_file() else {
            return Ok(Keymap::defaults());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Keymap::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keymap::defaults()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The action of a key event when `scope`'s pane has focus.
    pub fn action(&self, event: &KeyEvent, scope: Scope) -> Option<Action> {
        let combo = KeyCombo::from_event(event);
        self.table
            .get(&(scope, combo))
            .or_else(|| self.table.get(&(Scope::Global, combo)))
            .copied()
    }

    /// Every binding, in help order.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The first key of an action, for hints ("? help").
    pub fn key_for(&self, action: Action) -> Option<&str> {
        self.bindings
            .iter()
            .find(|b| b.action == action)
            .and_then(|b| b.keys.first())
            .map(String::as_str)
    }

    /// The bindings as a `keys.yaml` file (the sample in `assets/keymap.yaml`).
    pub fn to_yaml(&self) -> String {
        let mut out = String::from(
            "# layerscope key bindings: these are the defaults (dive's keys).\n\
             # Copy to ~/.config/layerscope/keys.yaml (or $XDG_CONFIG_HOME/layerscope/keys.yaml)\n\
             # and keep only what you change. Each action takes a key or a list of keys:\n\
             # ctrl+, alt+, shift+ modifiers; tab, enter, esc, space, up, down, left, right,\n\
             # pgup, pgdn, home, end, backspace, f1-f12, or one character.\n",
        );
        let mut scope = None;
        for b in &self.bindings {
            if scope != Some(b.scope) {
                let _ = writeln!(out, "\n# {}", b.scope.label());
                scope = Some(b.scope);
            }
            let keys: Vec<String> = b.keys.iter().map(|k| yaml_key(k)).collect();
            let _ = writeln!(out, "{}: [{}]", b.name, keys.join(", "));
        }
        out
    }

    /// The bindings as a Markdown table (kept in the README by a test).
    pub fn markdown_table(&self) -> String {
        let mut out =
            String::from("| Keys | Action | Where | Name in keys.yaml |\n|---|---|---|---|\n");
        for b in &self.bindings {
            let keys: Vec<String> = b
                .keys
                .iter()
                .map(|k| format!("`{}`", k.replace('|', "\\|")))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | `{}` |",
                keys.join(" "),
                b.help,
                b.scope.label(),
                b.name
            );
        }
        out
    }
}

/// Quote keys that YAML would read as something else (`?`, `/`).
fn yaml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
    {
        key.to_string()
    } else {
        format!("\"{key}\"")
    }
}

/// The user's key file: `keys.yaml` in the config directory.
pub fn config_file() -> Option<PathBuf> {
    let dir = if let Some(dir) = std::env::var_os("LAYERSCOPE_CONFIG_DIR") {
        PathBuf::from(dir)
    } else if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(xdg).join("layerscope")
    } else {
        PathBuf::from(std::env::var_os("HOME")?)
            .join(".config")
            .join("layerscope")
    };
    Some(dir.join("keys.yaml"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn defaults_parse_and_resolve_by_scope() {
        let map = Keymap::defaults();
        assert_eq!(map.bindings().len(), DEFAULTS.len());
        let ctrl_a = key(KeyCode::Char('a'), KeyModifiers::CONTROL);
        assert_eq!(map.action(&ctrl_a, Scope::Layers), Some(Action::CompareAll));
        assert_eq!(map.action(&ctrl_a, Scope::Tree), Some(Action::ToggleAdded));
        assert_eq!(map.action(&ctrl_a, Scope::Global), None);
        let shift_n = key(KeyCode::Char('N'), KeyModifiers::SHIFT);
        assert_eq!(map.action(&shift_n, Scope::Tree), Some(Action::SearchPrev));
        let backtab = key(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(map.action(&backtab, Scope::Tree), Some(Action::PrevPane));
        // Legacy terminals send Ctrl+Space as NUL, which crossterm reports as Ctrl+' '.
        let ctrl_space = key(KeyCode::Char(' '), KeyModifiers::CONTROL);
        assert_eq!(
            map.action(&ctrl_space, Scope::Tree),
            Some(Action::ToggleCollapseAll)
        );
        assert_eq!(
            map.action(&key(KeyCode::Char('j'), KeyModifiers::NONE), Scope::Layers),
            Some(Action::Down)
        );
        assert_eq!(
            map.action(&key(KeyCode::Char('l'), KeyModifiers::CONTROL), Scope::Tree),
            Some(Action::CompareLayer)
        );
    }

    #[test]
    fn overrides_replace_keys_and_refuse_unknowns() {
        let map = Keymap::from_yaml("quit: x\nsearch: [\"ctrl+s\", f3]\n").unwrap();
        let x = key(KeyCode::Char('x'), KeyModifiers::NONE);
        assert_eq!(map.action(&x, Scope::Global), Some(Action::Quit));
        let q = key(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(map.action(&q, Scope::Global), None);
        assert_eq!(
            map.action(&key(KeyCode::F(3), KeyModifiers::NONE), Scope::Tree),
            Some(Action::Search)
        );

        let err = Keymap::from_yaml("quitt: q\n").unwrap_err();
        assert_eq!(err, "unknown action 'quitt'");
        let err = Keymap::from_yaml("quit: ctrl+nope\n").unwrap_err();
        assert_eq!(err, "quit: unknown key 'ctrl+nope'");
        let err = Keymap::from_yaml("quit: hyper+q\n").unwrap_err();
        assert!(err.contains("unknown modifier 'hyper'"), "{err}");
        let err = Keymap::from_yaml("quit: j\n").unwrap_err();
        assert_eq!(err, "key 'j' is bound to both 'quit' and 'down'");
        let err = Keymap::from_yaml("- a\n").unwrap_err();
        assert!(err.contains("map"), "{err}");
        assert!(Keymap::from_yaml("").is_ok());
    }

    #[test]
    fn the_sample_file_holds_the_defaults() {
        let sample = include_str!("../../assets/keymap.yaml");
        assert_eq!(sample, Keymap::defaults().to_yaml());
        // And reading it back changes nothing.
        let reread = Keymap::from_yaml(sample).unwrap();
        assert_eq!(reread.bindings(), Keymap::defaults().bindings());
    }

    #[test]
    fn the_readme_lists_every_key() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&Keymap::defaults().markdown_table()),
            "README.md's key table differs from the keymap; paste:\n{}",
            Keymap::defaults().markdown_table()
        );
    }
}
