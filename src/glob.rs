//! Shell-style patterns of event names (`publish.eventExclude`): `*`, `?`, `[abc]`, `[a-z]`
//! and `[!x]`, matched against the whole name and case-sensitively, the way Python's
//! `fnmatch.fnmatchcase` matches them. Where Python would quietly read a typo as something
//! else (an unclosed `[` as a literal `[`, `[z-a]` as matching nothing, `\*` as a backslash
//! before any run), the pattern is refused with the reason instead. The settings page
//! repeats [`check`] in JavaScript (`patternError` in static/js/mqtt.js), with the same
//! reasons word for word, so any change here is a change there too.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    AnyChar,
    /// `*` (several in a row are one)
    AnyRun,
    /// `[...]`: inclusive ranges, a single character being a range of one.
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Char(x) => *x == c,
            Token::AnyChar => true,
            // Runs are matched by `matches_tokens` itself, never asked per character.
            Token::AnyRun => false,
            Token::Set { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Compiled {
    /// No wildcard at all: a plain comparison, the common case (`ZChange`).
    Exact(String),
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone)]
pub struct Pattern(Compiled);

/// Characters no event name has. `+`, `#` and NUL cannot be in a topic, so an event named
/// with one is never published anyway; whitespace is what a list split in the wrong place
/// leaves; `/` would add topic levels; `\` is refused because patterns have no escapes and
/// someone writing `\*` means something fnmatch would not do.
fn foreign(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '/' | '+' | '#' | '\\')
}

/// How a character is named in a reason: invisible ones by their code point.
fn char_name(c: char) -> String {
    if c == ' ' {
        "a space".into()
    } else if c.is_whitespace() || c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("\"{c}\"")
    }
}

/// A pattern as a log line or the page shows it: quoted, invisible characters by code point.
pub fn quoted(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 2);
    out.push('"');
    for c in pattern.chars() {
        if c != ' ' && (c.is_whitespace() || c.is_control()) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

impl Pattern {
    /// The pattern, or why it cannot be one. Positions in reasons count characters from 1.
    pub fn parse(pattern: &str) -> Result<Pattern, String> {
        if pattern.is_empty() {
            return Err("an empty pattern".into());
        }
        if let Some(c) = pattern.chars().find(|&c| foreign(c)) {
            return Err(format!(
                "contains {}, which no event name has",
                char_name(c)
            ));
        }
        if !pattern.contains(['*', '?', '[', ']']) {
            return Ok(Pattern(Compiled::Exact(pattern.to_string())));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Token::AnyRun) {
                        tokens.push(Token::AnyRun);
                    }
                    i += 1;
                }
                '?' => {
                    tokens.push(Token::AnyChar);
                    i += 1;
                }
                ']' => return Err(format!("the ] at character {} closes no set", i + 1)),
                '[' => {
                    let (set, next) = parse_set(&chars, i)?;
                    tokens.push(set);
                    i = next;
                }
                c => {
                    tokens.push(Token::Char(c));
                    i += 1;
                }
            }
        }
        Ok(Pattern(Compiled::Tokens(tokens)))
    }

    pub fn matches(&self, name: &str) -> bool {
        match &self.0 {
            Compiled::Exact(exact) => exact == name,
            Compiled::Tokens(tokens) => matches_tokens(tokens, name),
        }
    }
}

/// The set opening at `chars[open]` and the index after its `]`. The first `]` closes it:
/// fnmatch's `[]x]` (a set holding `]`) is refused as an empty set, as no event name has one.
fn parse_set(chars: &[char], open: usize) -> Result<(Token, usize), String> {
    let negated = chars.get(open + 1) == Some(&'!');
    let first = open + 1 + usize::from(negated);
    let Some(close) = chars[first..]
        .iter()
        .position(|&c| c == ']')
        .map(|p| first + p)
    else {
        return Err(format!("the [ at character {} is never closed", open + 1));
    };
    if close == first {
        return Err(format!("the set at character {} is empty", open + 1));
    }
    let mut ranges = Vec::new();
    let mut j = first;
    while j < close {
        let lo = chars[j];
        // A `-` first or last in the set is itself a member, as in fnmatch.
        if j + 2 < close && chars[j + 1] == '-' {
            let hi = chars[j + 2];
            if hi < lo {
                return Err(format!(
                    "the range {lo}-{hi} at character {} is backwards",
                    j + 1
                ));
            }
            ranges.push((lo, hi));
            j += 3;
        } else {
            ranges.push((lo, lo));
            j += 1;
        }
    }
    Ok((Token::Set { negated, ranges }, close + 1))
}

/// Every token but `*` takes exactly one character, so on a mismatch it is enough to let the
/// last `*` take one character more and go on from there (no deeper backtracking needed).
fn matches_tokens(tokens: &[Token], name: &str) -> bool {
    let (mut t, mut n) = (0, 0);
    // After the last `*` seen: the token following it, and where in `name` that one starts.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        if let Some(token) = tokens.get(t) {
            if *token == Token::AnyRun {
                t += 1;
                resume = Some((t, n));
                continue;
            }
            if let Some(c) = name[n..].chars().next() {
                if token.accepts(c) {
                    t += 1;
                    n += c.len_utf8();
                    continue;
                }
            }
        } else if n == name.len() {
            return true;
        }
        let Some((after_run, start)) = resume else {
            return false;
        };
        let Some(c) = name[start..].chars().next() else {
            return false;
        };
        let start = start + c.len_utf8();
        resume = Some((after_run, start));
        t = after_run;
        n = start;
    }
}

/// Why `pattern` cannot be used; `Ok` when it can.
pub fn check(pattern: &str) -> Result<(), String> {
    Pattern::parse(pattern).map(|_| ())
}

/// Each unusable pattern among `patterns` with its reason (`"Pos[": the [ at …`), as log
/// lines and the settings page name them.
pub fn unusable<'a>(patterns: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    patterns
        .into_iter()
        .filter_map(|p| check(p).err().map(|why| format!("{}: {why}", quoted(p))))
        .collect()
}

/// A list of patterns, compiled once per settings save and asked for every event.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    /// The usable patterns of `patterns`; the others are left out (the settings parse has
    /// already said which and why).
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Matcher {
        Matcher {
            patterns: patterns
                .into_iter()
                .filter_map(|p| Pattern::parse(p).ok())
                .collect(),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Pattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
            .matches(name)
    }

    #[test]
    fn whole_names_case_sensitive() {
        assert!(m("ZChange", "ZChange"));
        assert!(!m("ZChange", "zchange"));
        assert!(!m("ZChange", "ZChanged"));
        assert!(!m("Change", "ZChange"));
        assert!(m("Position*", "PositionUpdate"));
        assert!(m("Position*", "Position"));
        assert!(!m("Position*", "XPosition"));
        assert!(m("*Update", "PositionUpdate"));
        assert!(m("plugin_*", "plugin_softwareupdate_update"));
        assert!(!m("plugin_*", "Plugin_x"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
    }

    #[test]
    fn single_characters_and_sets() {
        assert!(m("Print?one", "PrintDone"));
        assert!(!m("Print?one", "Printone"));
        assert!(m("Print[DF]*", "PrintDone"));
        assert!(m("Print[DF]*", "PrintFailed"));
        assert!(!m("Print[DF]*", "PrintStarted"));
        assert!(m("Print[!DF]*", "PrintStarted"));
        assert!(!m("Print[!DF]*", "PrintDone"));
        assert!(m("tool[0-3]", "tool2"));
        assert!(!m("tool[0-3]", "tool4"));
        assert!(m("[a-cx-z]", "y"));
        assert!(m("a[-z]", "a-"));
        assert!(m("a[z-]", "a-"));
        assert!(m("a[!-]", "ab"));
        assert!(!m("a[!-]", "a-"));
        assert!(m("[[]", "["));
        assert!(m("x[é-ü]", "xö"));
        assert!(m("?", "é"));
        assert!(!m("?", ""));
        assert!(!m("??", "é"));
    }

    #[test]
    fn runs_backtrack() {
        assert!(m("*a*b*c", "xaxbxbxc"));
        assert!(!m("*a*b*c", "xaxbxbx"));
        assert!(m("a**b", "ab"));
        assert!(m("*?", "x"));
        assert!(!m("*?", ""));
        assert!(m("*[0-9]", "tool10"));
        assert!(m("a*a*a*a*a*b", &format!("{}b", "a".repeat(40))));
        assert!(!m("a*a*a*a*a*b", &"a".repeat(40)));
    }

    #[test]
    fn reasons_of_unusable_patterns() {
        let reason = |p: &str| check(p).unwrap_err();
        assert_eq!(reason(""), "an empty pattern");
        assert_eq!(
            reason("Print Done"),
            "contains a space, which no event name has"
        );
        assert_eq!(reason("a\tb"), "contains U+0009, which no event name has");
        assert_eq!(reason("a\0"), "contains U+0000, which no event name has");
        assert_eq!(
            reason("a\u{85}"),
            "contains U+0085, which no event name has"
        );
        assert_eq!(reason("a/b"), "contains \"/\", which no event name has");
        assert_eq!(reason("+"), "contains \"+\", which no event name has");
        assert_eq!(reason("#"), "contains \"#\", which no event name has");
        assert_eq!(reason("\\*"), "contains \"\\\", which no event name has");
        assert_eq!(reason("Pos[ition"), "the [ at character 4 is never closed");
        assert_eq!(reason("[!"), "the [ at character 1 is never closed");
        assert_eq!(reason("a[]"), "the set at character 2 is empty");
        assert_eq!(reason("[!]"), "the set at character 1 is empty");
        assert_eq!(reason("[]x]"), "the set at character 1 is empty");
        assert_eq!(
            reason("x[z-a]"),
            "the range z-a at character 3 is backwards"
        );
        assert_eq!(reason("Position*]"), "the ] at character 10 closes no set");
        // The first problem decides, characters before structure.
        assert_eq!(reason("[a b"), "contains a space, which no event name has");
    }

    #[test]
    fn what_is_usable() {
        for p in [
            "ZChange",
            "Position*",
            "plugin_*",
            "*",
            "?",
            "[a]",
            "[!a]",
            "[a-a]",
            "[-]",
            "[!-]",
            "a!b",
            "a-b",
            "[^x]",
            "[[]",
            "é*",
            "Print[DF]*",
        ] {
            assert!(check(p).is_ok(), "{p:?}: {:?}", check(p));
        }
    }

    #[test]
    fn quoting_shows_invisible_characters() {
        assert_eq!(quoted("a b"), "\"a b\"");
        assert_eq!(quoted("a\tb\0"), "\"a<U+0009>b<U+0000>\"");
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn a_matcher_asks_every_usable_pattern() {
        let none = Matcher::default();
        assert!(!none.matches("ZChange") && !none.matches(""));
        let m = Matcher::new(["ZChange", "Pos[", "Position*", "plugin_*"]);
        assert_eq!(m.patterns.len(), 3);
        for name in ["ZChange", "PositionUpdate", "plugin_x_y"] {
            assert!(m.matches(name), "{name}");
        }
        for name in ["Pos[", "PrintDone", "Home", "ZChanged"] {
            assert!(!m.matches(name), "{name}");
        }
    }
}
