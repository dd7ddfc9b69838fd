//! What counts as the same name. A userName and a group's displayName are unique under a
//! comparison key, not byte for byte or ASCII case only: names that a person reads as the
//! same must not make two accounts (`älice` and `ÄLICE`, a composed and a decomposed
//! `josé`, full-width `ａｌｉｃｅ`, the Kelvin sign `K` for `K`). The store keeps the key in
//! its own column under a UNIQUE index and finds names by it; the name itself is stored
//! and returned as the client sent it.
//!
//! Characters that make a name look like another without being it — controls (NUL and the
//! rest of Unicode's Cc), format characters (Cf: zero-width space, BOM, bidirectional
//! overrides such as RLO, soft hyphen, …) and the line and paragraph separators — are
//! refused in new names rather than folded away, so what is stored is what is seen.

use unicode_normalization::UnicodeNormalization;

/// The comparison key of a name: compatibility-normalised (NFKC: full-width forms, the
/// Kelvin and Ohm signs, ligatures and the like become their plain letters; composed and
/// decomposed accents become one form), runs of whitespace made one space and trimmed,
/// lowercased with Unicode's default (locale-independent) mapping, and composed again
/// (NFC). Under that default mapping `I` is `i` and `İ` is `i̇` (i with a combining dot),
/// while the dotless `ı` matches only itself: not the Turkish rules, which would need
/// the tenant's locale.
pub fn key(name: &str) -> String {
    let compatible: String = name.nfkc().collect();
    let mut spaced = String::with_capacity(compatible.len());
    for word in compatible.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !spaced.is_empty() {
            spaced.push(' ');
        }
        spaced.push_str(word);
    }
    spaced.to_lowercase().nfc().collect()
}

/// The first character a new name may not contain, if any: a control (Cc), a format
/// character (Cf), or a line or paragraph separator (U+2028, U+2029).
pub fn forbidden_char(name: &str) -> Option<char> {
    name.chars().find(|&c| c.is_control() || is_format(c) || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// How an error names a character: `U+200B`.
pub fn describe(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT_CHARS.binary_search_by(|&(lo, hi)| if hi < c { std::cmp::Ordering::Less } else if lo > c { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Equal }).is_ok()
}

/// Unicode general category Cf (Unicode 15.1, DerivedGeneralCategory.txt), as ranges.
const FORMAT_CHARS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_names_share_a_key() {
        let same = [
            ("älice@x.com", "ÄLICE@X.COM"),
            ("jos\u{e9}", "jose\u{301}"),
            ("ａｌｉｃｅ", "alice"),
            ("\u{212a}elvin", "kelvin"),
            ("Istanbul", "istanbul"),
            ("\u{130}stanbul", "i\u{307}stanbul"),
            ("ﬁnance", "finance"),
            ("Sales ", "sales"),
            ("  Sales\u{3000}Team ", "sales team"),
            ("Sales\u{a0}Team", "sales  team"),
            ("ΟΔΟΣ", "οδος"),
        ];
        for (a, b) in same {
            assert_eq!(key(a), key(b), "{a:?} and {b:?}");
        }
    }

    #[test]
    fn different_names_keep_different_keys() {
        let different = [("alice", "alicé"), ("\u{131}stanbul", "istanbul"), ("\u{130}stanbul", "istanbul"), ("a.b", "ab"), ("Sales", "Sale s")];
        for (a, b) in different {
            assert_ne!(key(a), key(b), "{a:?} and {b:?}");
        }
    }

    #[test]
    fn the_key_is_its_own_key() {
        for name in ["ÄLICE", "jose\u{301}", "ＡＢＣ", "\u{212a}", "\u{130}", "ΣΑΣ", "ß", "ǅ", "\u{1e9e}", "ﬃ", "Ⅻ", "㎒"] {
            let k = key(name);
            assert_eq!(key(&k), k, "{name:?}");
        }
    }

    #[test]
    fn controls_and_format_characters_are_forbidden() {
        for (name, c) in [
            ("a\u{0}b", '\u{0}'),
            ("a\u{7}", '\u{7}'),
            ("a\u{85}", '\u{85}'),
            ("ali\u{200b}ce", '\u{200b}'),
            ("\u{feff}alice", '\u{feff}'),
            ("alice\u{202e}", '\u{202e}'),
            ("a\u{ad}b", '\u{ad}'),
            ("a\u{2028}b", '\u{2028}'),
            ("tag\u{e0041}", '\u{e0041}'),
        ] {
            assert_eq!(forbidden_char(name), Some(c), "{name:?}");
        }
        for name in ["alice@x.com", "José Müller", "ΟΔΟΣ", "日本語", "Sales Team", "a\u{301}"] {
            assert_eq!(forbidden_char(name), None, "{name:?}");
        }
        assert_eq!(describe('\u{200b}'), "U+200B");
    }
}
