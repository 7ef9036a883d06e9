//! "Did you mean": the pods on this node whose names are closest to a misspelt one.

/// How many similar names an unknown-pod error suggests.
const CLOSEST_NAMES: usize = 3;

/// Up to [`CLOSEST_NAMES`] `namespace/name`s like `wanted`, chosen among `known`
/// (`(namespace, name)` pairs): names containing the wanted name (or contained in it) first,
/// then by edit distance between the names, the same namespace winning ties. Names that share
/// too little to help are left out; a right name in the wrong namespace is always offered.
pub(super) fn closest_names<'a>(
    wanted: &str,
    known: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let (wanted_ns, wanted_name) = wanted.split_once('/').unwrap_or(("", wanted));
    let mut scored: Vec<(bool, usize, bool, String)> = known
        .into_iter()
        .filter_map(|(namespace, name)| {
            let contains = !wanted_name.is_empty()
                && !name.is_empty()
                && (name.contains(wanted_name) || wanted_name.contains(name));
            let distance = edit_distance(wanted_name, name);
            let near = distance <= wanted_name.chars().count().max(name.chars().count()) / 2;
            (contains || near).then(|| {
                (
                    !contains,
                    distance,
                    namespace != wanted_ns,
                    format!("{namespace}/{name}"),
                )
            })
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.3 == b.3);
    scored
        .into_iter()
        .take(CLOSEST_NAMES)
        .map(|(_, _, _, name)| name)
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names_prefer_substrings_and_stop_at_three() {
        let names = [
            "handler-a",
            "handler-b",
            "handler-c",
            "handler-d",
            "handlers",
        ];
        assert_eq!(
            closest_names("ns/handler", names.map(|n| ("ns", n))),
            ["ns/handlers", "ns/handler-a", "ns/handler-b"]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_same_namespace_wins_a_tie_and_far_names_are_left_out() {
        let known = [
            ("default", "web"),
            ("kube-system", "web"),
            ("kube-system", "zzzzzzzz"),
        ];
        assert_eq!(
            closest_names("kube-system/web", known),
            ["kube-system/web", "default/web"]
        );
        assert!(closest_names("ns/abcdefgh", known).is_empty());
    }
}
