//! "Did you mean": the closest of the names a plan or a command could have used, by edit
//! distance, as cargo and Terraform suggest them, so that a typo is fixed in one go.

/// The Levenshtein distance between `a` and `b` (insertions, deletions, substitutions),
/// by characters.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Words longer than this get no suggestion: every name lct knows fits in a DNS label (63),
/// and the distance costs the product of the lengths, which a hostile plan would choose.
pub const MAX_SUGGESTED: usize = 64;

/// The candidate closest to `word`, if one is close enough to be a typo of it: at most a
/// third of the word's length away (one edit for short words), as rustc and cargo judge.
/// Bounded: a word over [`MAX_SUGGESTED`] characters, and candidates whose length alone puts
/// them too far, are not compared.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let length = word.chars().count();
    if length > MAX_SUGGESTED {
        return None;
    }
    let most = (length / 3).max(1);
    candidates
        .into_iter()
        // A byte length over 4 bytes a character is too long before its characters are counted.
        .filter(|c| *c != word && c.len() <= (length + most) * 4 && c.chars().count().abs_diff(length) <= most)
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean `NAME`?` when a candidate is close to `word`, else nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates).map_or_else(String::new, |c| format!("; did you mean `{c}`?"))
}

/// The suggestion for serde's "unknown field `x`, expected one of `a`, `b`" and "unknown
/// variant `x`, expected `a` or `b`": the first quoted word is the unknown one, the others
/// are the candidates.
pub fn for_serde(message: &str) -> String {
    if !message.starts_with("unknown field") && !message.starts_with("unknown variant") {
        return String::new();
    }
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    match quoted.split_first() {
        Some((word, candidates)) => did_you_mean(word, candidates.iter().copied()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_word_or_candidate_costs_nothing() {
        // A megabyte-long unknown name against a thousand megabyte-long candidates: compared,
        // this would be 10^15 steps; bounded, it is none.
        let long = "x".repeat(1 << 20);
        let started = std::time::Instant::now();
        assert_eq!(closest(&long, std::iter::repeat_n(long.as_str(), 1000)), None);
        assert_eq!(closest("server", std::iter::repeat_n(long.as_str(), 1000).chain(["sever"])), Some("sever"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("hosts", "hosts"), 0);
        assert_eq!(closest("hostz", ["hosts", "firewall", "dns"]), Some("hosts"));
        assert_eq!(closest("colour", ["count", "hostname", "image"]), None);
        assert_eq!(closest("servers", ["server", "listen_public"]), Some("server"));
        assert_eq!(
            for_serde("unknown variant `hostz`, expected one of `hosts`, `firewall`, `dns`"),
            "; did you mean `hosts`?"
        );
        assert_eq!(for_serde("unknown field `hostnme`, expected `count` or `hostname`"), "; did you mean `hostname`?");
        assert_eq!(for_serde("invalid type: string \"x\", expected u32"), "");
    }
}
