//! The one decision of what may reach the real IMDS: taken on the canonical path (after the path
//! rules, the version set aside), so no spelling of a credential path can slip through.

use super::path::CanonicalPath;
use crate::scenario::Published;

/// Where one request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// From spot-sim's own tree (404 where it has nothing).
    Simulate,
    /// The real `meta-data/` listing, with the simulated entries as the phase has them.
    MergedListing,
    /// GET the canonical path upstream.
    Forward,
}

/// `meta-data/` entries that are the instance's own and no event: what spot-sim says the
/// instance is, whatever the real one would say.
const OWN: &[&str] = &["instance-action", "instance-life-cycle", "tags"];

/// The `meta-data/` entries spot-sim always answers itself, passthrough or not: its own, and
/// the folder of every path the timeline publishes in.
pub(crate) fn simulated(published: &[Published]) -> impl Iterator<Item = &'static str> + '_ {
    OWN.iter()
        .copied()
        .chain(published.iter().map(Published::top))
}

/// Decides for `path`. `passthrough`: an upstream is configured; `allow_credentials`: the user
/// chose to let credential-bearing paths through (`--allow-credentials`); `published`: where
/// the timeline publishes its events.
///
/// Never forwarded without `allow_credentials`: `meta-data/iam/`, `meta-data/identity-credentials/`
/// (the node's role and instance credentials), `user-data` (where secrets often live) and
/// `dynamic/instance-identity/{pkcs7,signature,rsa2048}` (signed proofs that Vault's EC2 auth and
/// others accept as credentials). Never forwarded at all: [`simulated`], unknown versions, and any
/// segment outside the characters real metadata names use. Names compare case-insensitively and
/// by prefix, so `IAM`, `iam;x` or `user-data.bak` are refused too rather than asked upstream.
pub(crate) fn decide(
    path: &CanonicalPath<'_>,
    passthrough: bool,
    allow_credentials: bool,
    published: &[Published],
) -> Decision {
    if !passthrough || path.version().is_none() {
        return Decision::Simulate;
    }
    let rest: Vec<String> = path.rest().iter().map(|s| s.to_ascii_lowercase()).collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let ours = matches!(rest.as_slice(), ["meta-data", first, ..]
        if simulated(published).any(|s| first.starts_with(s)));
    if rest.is_empty() || ours {
        return Decision::Simulate;
    }
    if rest == ["meta-data"] {
        return Decision::MergedListing;
    }
    if credential_bearing(&rest) && !allow_credentials {
        return Decision::Simulate;
    }
    if !path.rest().iter().all(|s| s.bytes().all(is_name_byte)) {
        return Decision::Simulate;
    }
    Decision::Forward
}

/// Paths whose answer is, or proves, an identity (lower-cased segments below the version).
pub(crate) fn credential_bearing(rest: &[&str]) -> bool {
    const SIGNED: &[&str] = &["pkcs7", "signature", "rsa2048"];
    match rest {
        [first, ..] if first.starts_with("user-data") => true,
        ["meta-data", second, ..] => {
            second.starts_with("iam") || second.starts_with("identity-credentials")
        }
        ["dynamic", second, third, ..] if second.starts_with("instance-identity") => {
            SIGNED.iter().any(|s| third.starts_with(s))
        }
        _ => false,
    }
}

/// Letters, digits and `-._:=` (MACs have `:`, `public-keys/0=name` has `=`).
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._:=".contains(&b)
}
