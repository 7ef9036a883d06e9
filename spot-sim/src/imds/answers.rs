//! The shape of every answer the fake IMDS gives: EC2's headers (`Server: EC2ws`, the content
//! type, the length a GET would have, HEAD too), its error page byte for byte, and when a
//! connection closes after the answer.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Response, StatusCode, Version};

/// HTTP/1.0 without keep-alive, or an explicit `Connection: close`.
pub(super) fn wants_close(version: Version, headers: &HeaderMap) -> bool {
    let connection = headers
        .get(hyper::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if connection.split(',').any(|t| t.trim() == "close") {
        return true;
    }
    version == Version::HTTP_10 && !connection.split(',').any(|t| t.trim() == "keep-alive")
}

pub(super) fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    head: bool,
) -> Response<Full<Bytes>> {
    respond(status, "text/plain", body.into(), head)
}

/// The body IMDS sends with an error status, byte for byte.
pub(crate) fn error_body(status: StatusCode) -> String {
    let title = format!(
        "{} - {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    format!(
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n\
         <!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
         \t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n \
         <head>\n  <title>{title}</title>\n </head>\n <body>\n  <h1>{title}</h1>\n </body>\n\
         </html>\n"
    )
}

pub(super) fn error_page(status: StatusCode, head: bool) -> Response<Full<Bytes>> {
    respond(status, "text/html", error_body(status).into(), head)
}

/// Every answer: `Server: EC2ws`, the content type, and the length GET would have (HEAD too).
pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    head: bool,
) -> Response<Full<Bytes>> {
    let len = body.len();
    let mut response = Response::new(Full::new(if head { Bytes::new() } else { body }));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(hyper::header::SERVER, HeaderValue::from_static("EC2ws"));
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}
