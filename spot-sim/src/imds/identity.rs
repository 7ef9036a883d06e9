//! `dynamic/instance-identity/`: the identity document and its signed forms.
//!
//! The signed forms are well-formed but NOT signed by AWS, and say so by their structure rather
//! than by a fake signature: `pkcs7` and `rsa2048` are PKCS#7 SignedData (base64 DER, 64-column
//! lines, as EC2 serves them) that carry the document and no signer at all; `signature` is 128
//! zero bytes in base64, the length of EC2's RSA signature, which verifies against no key. A
//! verifier (Vault's EC2 auth, `openssl smime -verify`) rejects all three, as it must.

use std::fmt::Write as _;

use super::config::Metadata;

/// The JSON document, laid out as EC2 lays it out (` : `, two-space indent).
pub(crate) fn document(m: &Metadata, pending_time: &str) -> String {
    let mut out = String::from("{\n");
    let fields: [(&str, Option<&str>); 15] = [
        ("accountId", Some(&m.account_id)),
        ("architecture", Some(&m.architecture)),
        ("availabilityZone", Some(&m.availability_zone)),
        ("billingProducts", None),
        ("devpayProductCodes", None),
        ("marketplaceProductCodes", None),
        ("imageId", Some(&m.ami_id)),
        ("instanceId", Some(&m.instance_id)),
        ("instanceType", Some(&m.instance_type)),
        ("kernelId", None),
        ("pendingTime", Some(pending_time)),
        ("privateIp", Some(&m.local_ipv4)),
        ("ramdiskId", None),
        ("region", Some(&m.region)),
        ("version", Some("2017-09-30")),
    ];
    let last = fields.len() - 1;
    for (i, (k, v)) in fields.iter().enumerate() {
        let value = v.map_or_else(
            || "null".to_string(),
            |s| serde_json::Value::from(s).to_string(),
        );
        let sep = if i == last { "" } else { "," };
        let _ = writeln!(out, "  \"{k}\" : {value}{sep}");
    }
    out.push('}');
    out
}

/// Which digest the SignedData names: `pkcs7` is SHA-1 on EC2, `rsa2048` SHA-256.
#[derive(Clone, Copy)]
pub(crate) enum Digest {
    Sha1,
    Sha256,
}

/// PKCS#7 SignedData holding `document`, with an empty `signerInfos`: parseable, not signed.
pub(crate) fn unsigned_pkcs7(document: &str, digest: Digest) -> String {
    const SIGNED_DATA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
    ];
    const DATA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
    ];
    let digest_oid: &[u8] = match digest {
        Digest::Sha1 => &[0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a],
        Digest::Sha256 => &[
            0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        ],
    };
    let algorithm = tlv(0x30, &[digest_oid, &[0x05, 0x00]].concat());
    let content = tlv(
        0x30,
        &[DATA, &tlv(0xa0, &tlv(0x04, document.as_bytes()))].concat(),
    );
    let signed_data = tlv(
        0x30,
        &[
            &[0x02, 0x01, 0x01][..],
            &tlv(0x31, &algorithm),
            &content,
            &tlv(0x31, &[]),
        ]
        .concat(),
    );
    let info = tlv(0x30, &[SIGNED_DATA, &tlv(0xa0, &signed_data)].concat());
    wrap(&base64(&info), 64)
}

/// 128 zero bytes: the size of EC2's signature, valid under no key.
pub(crate) fn unsigned_signature() -> String {
    wrap(&base64(&[0u8; 128]), 76)
}

/// A DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn wrap(s: &str, width: usize) -> String {
    s.as_bytes()
        .chunks(width)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn long_der_lengths_use_the_long_form() {
        assert_eq!(&tlv(0x04, &[0; 200])[..3], &[0x04, 0x81, 200]);
        assert_eq!(&tlv(0x04, &[0; 300])[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }
}
