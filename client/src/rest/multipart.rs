//! A `multipart/form-data` body for the upload routes (avatars and
//! attachments).

/// One part of a multipart form: a file when `file_name` is set.
pub struct Part<'a> {
    pub name: &'a str,
    pub file_name: Option<&'a str>,
    /// A file's declared type (`application/octet-stream` when `None`).
    pub content_type: Option<&'a str>,
    pub bytes: &'a [u8],
}

impl<'a> Part<'a> {
    pub fn file(name: &'a str, file_name: &'a str, bytes: &'a [u8]) -> Part<'a> {
        Part {
            name,
            file_name: Some(file_name),
            content_type: None,
            bytes,
        }
    }

    /// A file declared as `content_type`.
    pub fn typed_file(
        name: &'a str,
        file_name: &'a str,
        content_type: &'a str,
        bytes: &'a [u8],
    ) -> Part<'a> {
        Part {
            content_type: Some(content_type),
            ..Part::file(name, file_name, bytes)
        }
    }

    pub fn text(name: &'a str, value: &'a str) -> Part<'a> {
        Part {
            name,
            file_name: None,
            content_type: None,
            bytes: value.as_bytes(),
        }
    }
}

/// A `multipart/form-data` body of `parts`: its `Content-Type` (with the
/// boundary) and its bytes.
pub fn multipart(parts: &[Part]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "vato-test-boundary-7d1a9c";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part.file_name {
            Some(file_name) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{file_name}\"\r\nContent-Type: {}\r\n\r\n",
                    part.name,
                    part.content_type.unwrap_or("application/octet-stream")
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", part.name)
                    .as_bytes(),
            ),
        }
        body.extend_from_slice(part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}
