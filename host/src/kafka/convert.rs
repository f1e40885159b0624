//! Kafka records and plugin messages. Header names are read as bytes: librdkafka keeps each
//! name's length beside it, so a NUL byte inside a name is seen rather than cut off, and a name
//! that is not UTF-8 is never handed to an API that panics on it. A message with a name the
//! bridge cannot carry is marked unreadable: it is refused before the plugins
//! (`conversion-error`) and dead-lettered with its names escaped, or left uncommitted.

use std::ffi::{CStr, c_char, c_void};
use std::fmt::Write as _;

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedMessage, Message as _, OwnedHeaders};
use rdkafka::types::RDKafkaRespErr;

use crate::plugin::{KafkaOrigin, Message, Origin};

/// A consumed record as a plugin message.
pub fn to_message(cluster: &str, m: &BorrowedMessage<'_>) -> Message {
    let mut msg = Message::new(m.payload().map(<[u8]>::to_vec));
    msg.key = m.key().map(<[u8]>::to_vec);
    (msg.headers, msg.unreadable) = carry_headers(raw_headers(m));
    msg.timestamp = m.timestamp().to_millis();
    msg.origin = Origin::Kafka(KafkaOrigin {
        cluster: cluster.to_string(),
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
    });
    msg
}

/// Headers for a produced record, in order.
pub fn headers(msg: &Message) -> OwnedHeaders {
    msg.headers.iter().fold(
        OwnedHeaders::new_with_capacity(msg.headers.len()),
        |h, (k, v)| {
            h.insert(rdkafka::message::Header {
                key: k,
                value: Some(v),
            })
        },
    )
}

/// A consumed header as librdkafka holds it: the name's bytes, NULs included.
#[derive(Debug, Clone, Copy)]
pub struct RawHeader<'a> {
    /// The name.
    pub name: &'a [u8],
    /// The value; `None` for a null value.
    pub value: Option<&'a [u8]>,
}

/// Message headers from `raw`, in order, and what keeps them from being carried: a name that
/// is not UTF-8 or holds a NUL byte. Such a name is kept escaped ([`escape_name`]).
pub fn carry_headers<'a>(
    raw: impl IntoIterator<Item = RawHeader<'a>>,
) -> (Vec<(String, Vec<u8>)>, Option<String>) {
    let mut problem = None;
    let headers = raw
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let name = match std::str::from_utf8(h.name) {
                Ok(name) if !name.contains('\0') => name.to_string(),
                Ok(_) | Err(_) => {
                    let escaped = escape_name(h.name);
                    problem.get_or_insert_with(|| {
                        let what = if std::str::from_utf8(h.name).is_ok() {
                            "holds a NUL byte"
                        } else {
                            "is not UTF-8"
                        };
                        format!(
                            "Kafka header {} of the record: its name {what} (escaped: `{escaped}`); a header name must be UTF-8 without NUL bytes",
                            i + 1
                        )
                    });
                    escaped
                }
            };
            (name, h.value.map(<[u8]>::to_vec).unwrap_or_default())
        })
        .collect();
    (headers, problem)
}

/// `name` with every byte that is not printable ASCII, and `%`, written as `%XX`.
pub fn escape_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_graphic() && b != b'%' || b == b' ' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The headers of a consumed record, read through librdkafka's C API (rdkafka's own accessor
/// panics on a name that is not UTF-8).
fn raw_headers<'m>(m: &'m BorrowedMessage<'_>) -> Vec<RawHeader<'m>> {
    let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is the live message `m` borrows; librdkafka parses its headers once
    // and keeps them with the message, which outlives the returned slices ('m).
    let err = unsafe { rd::rd_kafka_message_headers(m.ptr(), &mut hdrs) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return Vec::new();
    }
    // SAFETY: `hdrs` is the message's header list, valid while the message is.
    let count = unsafe { rd::rd_kafka_header_cnt(hdrs) };
    (0..count)
        .filter_map(|idx| {
            let mut name: *const c_char = std::ptr::null();
            let mut value: *const c_void = std::ptr::null();
            let mut size = 0usize;
            // SAFETY: `idx` is below the count; the out-pointers are valid locals.
            let err =
                unsafe { rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            // SAFETY: `name` and `value` point into the header librdkafka returned above.
            let name = unsafe { name_bytes(name, value, size) };
            // SAFETY: a non-null value is `size` bytes long.
            let value = (!value.is_null())
                .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
            Some(RawHeader { name, value })
        })
        .collect()
}

/// librdkafka's `rd_kafka_header_t` (`rdkafka_header.h` of the bundled librdkafka): the name
/// is stored inline after its length and a pointer to the value.
#[repr(C)]
struct StoredHeader {
    ser_size: usize,
    value_size: usize,
    name_size: usize,
    value: *const c_char,
    name: [c_char; 1],
}

/// The bytes of the header name at `name`, NULs included: its stored length, read from the
/// header that holds it once the header's value pointer and size confirm the layout; else
/// up to the first NUL (which is then the whole name, as librdkafka terminates every name),
/// with a warning: a librdkafka whose header layout differs cannot carry a NUL in a name.
///
/// # Safety
/// `name`, `value` and `value_size` are what `rd_kafka_header_get_all` returned for one
/// header, which stays alive for `'a`.
unsafe fn name_bytes<'a>(name: *const c_char, value: *const c_void, value_size: usize) -> &'a [u8] {
    // SAFETY: as this function's.
    match unsafe { stored_name(name, value, value_size) } {
        Ok(full) => full,
        Err(terminated) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "This librdkafka stores Kafka header names in a layout the bridge does not know: \
                     a header name is read up to its first NUL byte."
                );
            });
            terminated
        }
    }
}

/// The whole stored name, or (`Err`) the name up to its first NUL when the layout of the
/// header around it is not confirmed.
///
/// # Safety
/// As [`name_bytes`].
unsafe fn stored_name<'a>(
    name: *const c_char,
    value: *const c_void,
    value_size: usize,
) -> Result<&'a [u8], &'a [u8]> {
    // SAFETY: librdkafka terminates every name with a NUL.
    let terminated = unsafe { CStr::from_ptr(name) }.to_bytes();
    let offset = std::mem::offset_of!(StoredHeader, name);
    let header = name
        .cast::<u8>()
        .wrapping_sub(offset)
        .cast::<StoredHeader>();
    if !header.is_aligned() {
        return Err(terminated);
    }
    // SAFETY: the name is the last field of the `rd_kafka_header_t` librdkafka allocated; the
    // fields before it are part of the same allocation. Checked below against what
    // `rd_kafka_header_get_all` returned before anything is trusted.
    let stored = unsafe { &*header };
    let same_value = std::ptr::eq(stored.value, value.cast())
        && (value.is_null() || stored.value_size == value_size);
    if !same_value || stored.name_size < terminated.len() {
        return Err(terminated);
    }
    // SAFETY: the name is `name_size` bytes followed by its terminating NUL.
    let full = unsafe { std::slice::from_raw_parts(name.cast::<u8>(), stored.name_size + 1) };
    if full[stored.name_size] != 0 {
        return Err(terminated);
    }
    Ok(&full[..stored.name_size])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(name: &'a [u8], value: &'a [u8]) -> RawHeader<'a> {
        RawHeader {
            name,
            value: Some(value),
        }
    }

    /// The bundled librdkafka's header layout is the one [`StoredHeader`] describes: a name
    /// with a NUL byte (and a null value) is read whole, not up to the NUL. Fails when an
    /// upgrade of librdkafka changes the layout.
    #[test]
    fn the_bundled_librdkafka_header_layout_is_known() {
        let cases: [(&[u8], Option<&[u8]>); 3] = [
            (b"plain", Some(b"v")),
            (b"a\0b\0", Some(b"")),
            (b"n\xff\0x", None),
        ];
        // SAFETY: a header list of our own, freed below; the pointers passed are live slices.
        unsafe {
            let hdrs = rd::rd_kafka_headers_new(cases.len());
            for (name, value) in cases {
                let (ptr, len) = value.map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.len()));
                let err = rd::rd_kafka_header_add(
                    hdrs,
                    name.as_ptr().cast(),
                    name.len() as isize,
                    ptr.cast(),
                    len as isize,
                );
                assert_eq!(err, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
            }
            for (idx, (name, value)) in cases.into_iter().enumerate() {
                let mut n: *const c_char = std::ptr::null();
                let mut v: *const c_void = std::ptr::null();
                let mut size = 0usize;
                let err = rd::rd_kafka_header_get_all(hdrs, idx, &mut n, &mut v, &mut size);
                assert_eq!(err, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
                assert_eq!(stored_name(n, v, size), Ok(name), "header {idx}");
                assert_eq!(v.is_null(), value.is_none(), "header {idx}");
            }
            rd::rd_kafka_headers_destroy(hdrs);
        }
    }

    #[test]
    fn utf8_names_are_carried_as_they_are() {
        let (headers, problem) = carry_headers([raw(b"a", b"1"), raw("é%".as_bytes(), b"")]);
        assert_eq!(problem, None);
        assert_eq!(
            headers,
            vec![("a".into(), b"1".to_vec()), ("é%".into(), Vec::new())]
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_or_holds_a_nul_is_escaped_and_named() {
        let (headers, problem) = carry_headers([
            raw(b"ok", b"1"),
            raw(b"n\xff\xfeame", b"2"),
            raw(b"a\0b", b"3"),
        ]);
        assert_eq!(headers[1].0, "n%FF%FEame");
        assert_eq!(headers[2].0, "a%00b");
        let problem = problem.expect("a problem");
        assert!(
            problem.contains("header 2") && problem.contains("not UTF-8"),
            "{problem}"
        );
    }

    #[test]
    fn escaping_keeps_printable_ascii_and_marks_percent() {
        assert_eq!(escape_name(b"x-y z%\x7f"), "x-y z%25%7F");
    }
}
