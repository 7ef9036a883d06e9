//! The path rules the real IMDS applies before routing, in one place: repeated slashes collapse,
//! a trailing slash is tolerated, and anything that could climb or hide a separator (`.`, `..`,
//! percent-escapes, control bytes) is refused before a route or the upstream sees it.

/// The API versions `GET /` lists, oldest first, `latest` last.
///
/// Sources: AWS EC2 User Guide, "Retrieve instance metadata" → "Get the available versions of
/// the instance metadata" (its example output runs `1.0` … `2016-09-02`, `latest`); the `GET /`
/// of a real instance in a 2021 SSRF write-up (adds `2018-03-28` … `2020-10-27`); a later
/// instance's listing kept verbatim in a public IMDS honeypot's source (adds `2021-01-03`,
/// `2021-03-23`, `2021-07-15`, `2022-07-09`, `2022-09-24`), matching the "Version when category
/// was released" column of "Instance metadata categories" (ipv6, tags, autoscaling, system).
/// cloud-init's EC2 datasource probes `2021-03-23`, `2018-09-24`, `2016-09-02` and `2009-04-04`.
/// Newer builds than these may exist on new instances; clients that pin a version use these.
pub(crate) const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-07-09",
    "2022-09-24",
    "latest",
];

/// More segments than any real metadata path has, by far (the deepest is 7).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// A request path after the path rules: what every later decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CanonicalPath<'a> {
    /// Non-empty segments, in order; empty for `/`.
    pub segments: Vec<&'a str>,
    /// The client asked with a trailing slash (a directory listing).
    pub trailing_slash: bool,
}

/// Why a path never reaches a route; the client sees the 404 page either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathRejection {
    NotAbsolute,
    TooLong,
    /// NUL, control, space or non-ASCII bytes.
    NotPrintable,
    /// `%` escapes are never decoded, so `%2e%2e` or `%2f` cannot smuggle a step or a separator.
    PercentEncoded,
    DotSegment,
    TooManySegments,
}

/// Applies the path rules to `raw` (the URI's path, without the query).
pub(crate) fn canonical(raw: &str, max_len: usize) -> Result<CanonicalPath<'_>, PathRejection> {
    if raw.len() > max_len {
        return Err(PathRejection::TooLong);
    }
    if !raw.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PathRejection::NotPrintable);
    }
    if raw.contains('%') {
        return Err(PathRejection::PercentEncoded);
    }
    let mut segments = Vec::new();
    for s in raw.split('/').filter(|s| !s.is_empty()) {
        if s == "." || s == ".." {
            return Err(PathRejection::DotSegment);
        }
        if segments.len() == MAX_SEGMENTS {
            return Err(PathRejection::TooManySegments);
        }
        segments.push(s);
    }
    Ok(CanonicalPath {
        trailing_slash: raw.ends_with('/') && !segments.is_empty(),
        segments,
    })
}

impl CanonicalPath<'_> {
    /// `PUT /latest/api/token` (under `latest` only, as on EC2).
    pub fn is_token_path(&self) -> bool {
        self.segments == ["latest", "api", "token"]
    }

    /// `api/token` under a dated version (`/2021-03-23/api/token`), where EC2 refuses the PUT.
    pub fn is_versioned_token_path(&self) -> bool {
        self.version().is_some_and(|v| v != "latest") && self.rest() == ["api", "token"]
    }

    /// The API version, if the first segment is one the real service lists.
    pub fn version(&self) -> Option<&str> {
        self.segments
            .first()
            .copied()
            .filter(|v| VERSIONS.contains(v))
    }

    /// The segments below the version.
    pub fn rest(&self) -> &[&str] {
        self.segments.get(1..).unwrap_or(&[])
    }

    /// The path with any known version shown as `latest` and single slashes: what the game-day
    /// journal keeps, so `//2021-03-23/meta-data/spot/instance-action` counts as a read of the
    /// notice like `/latest/meta-data/spot/instance-action`.
    pub fn as_latest(&self) -> String {
        match self.version() {
            Some(_) if self.rest().is_empty() => "/latest".to_string(),
            Some(_) => format!("/latest/{}", self.rest().join("/")),
            None => format!("/{}", self.segments.join("/")),
        }
    }

    /// The path as it is forwarded: single slashes, the trailing slash kept.
    pub fn to_path(&self) -> String {
        let mut p = format!("/{}", self.segments.join("/"));
        if self.trailing_slash {
            p.push('/');
        }
        p
    }
}

/// `path` fit for one log line: cut short, anything unprintable escaped.
pub(crate) fn for_log(path: &str) -> String {
    let cut: String = path.chars().take(120).collect();
    crate::escape::untrusted(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_slashes_collapse_anywhere_and_a_trailing_slash_is_kept_apart() {
        for raw in [
            "//latest/meta-data/instance-id",
            "/latest//meta-data/instance-id",
            "/latest/meta-data///instance-id",
            "/latest/meta-data/instance-id/",
        ] {
            let p = canonical(raw, 1024).unwrap();
            assert_eq!(p.segments, ["latest", "meta-data", "instance-id"], "{raw}");
        }
        assert!(canonical("//latest//", 1024).unwrap().trailing_slash);
        assert_eq!(canonical("///", 1024).unwrap().segments.len(), 0);
    }

    #[test]
    fn what_could_climb_or_hide_a_separator_is_refused() {
        let deep = "/a".repeat(MAX_SEGMENTS + 1);
        let long = format!("/latest/{}", "a".repeat(9000));
        for (raw, why) in [
            (
                "/latest/meta-data/../meta-data/iam/",
                PathRejection::DotSegment,
            ),
            ("/latest/./meta-data/", PathRejection::DotSegment),
            ("/latest/meta-data/%2e%2e/x", PathRejection::PercentEncoded),
            ("/latest/meta-data%2fiam", PathRejection::PercentEncoded),
            ("/latest/meta-data/\u{0}", PathRejection::NotPrintable),
            ("/latest/meta-data/\t", PathRejection::NotPrintable),
            ("/latest/meta-data/é", PathRejection::NotPrintable),
            ("latest/meta-data", PathRejection::NotAbsolute),
            (deep.as_str(), PathRejection::TooManySegments),
            (long.as_str(), PathRejection::TooLong),
        ] {
            assert_eq!(canonical(raw, 8192), Err(why), "{raw:?}");
        }
    }

    #[test]
    fn the_token_path_is_latest_only_and_versions_are_the_listed_ones() {
        assert!(canonical("//latest/api/token", 64).unwrap().is_token_path());
        assert!(!canonical("/2021-03-23/api/token", 64)
            .unwrap()
            .is_token_path());
        for (raw, versioned) in [
            ("/2021-03-23/api/token", true),
            ("//1.0/api//token/", true),
            ("/latest/api/token", false),
            ("/2010-01-01/api/token", false),
            ("/2021-03-23/api/token/x", false),
        ] {
            let p = canonical(raw, 64).unwrap();
            assert_eq!(p.is_versioned_token_path(), versioned, "{raw}");
        }
        assert_eq!(
            canonical("/2009-04-04/meta-data", 64).unwrap().version(),
            Some("2009-04-04")
        );
        assert_eq!(canonical("/LATEST/meta-data", 64).unwrap().version(), None);
        assert_eq!(VERSIONS.last(), Some(&"latest"));
        assert!(VERSIONS.windows(2).all(|w| w[0] < w[1] || w[1] == "latest"));
    }

    #[test]
    fn log_lines_never_carry_raw_control_bytes() {
        assert_eq!(for_log("/a\u{1b}[2J"), "/a\\x1b[2J");
        assert!(for_log(&"x".repeat(500)).len() <= 120);
    }
}

#[cfg(test)]
mod as_latest_tests {
    #[test]
    fn every_spelling_of_the_notice_path_reads_as_latest() {
        for raw in [
            "/latest/meta-data/spot/instance-action",
            "//latest/meta-data/spot/instance-action",
            "/2021-03-23/meta-data//spot/instance-action/",
            "/1.0/meta-data/spot/instance-action",
        ] {
            let p = super::canonical(raw, 1024).unwrap();
            assert_eq!(
                p.as_latest(),
                "/latest/meta-data/spot/instance-action",
                "{raw}"
            );
        }
    }
}
