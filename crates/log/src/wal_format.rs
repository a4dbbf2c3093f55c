//! The WAL object format. One object per flush:
//!
//! ```text
//! [batches of partition A][batches of partition B]…[footer][footer length: u32 BE][magic]
//! ```
//!
//! The footer is the object's index entry as the metadata store holds it (a versioned
//! record, see `stratus_meta::repo`), so an object can be read without the store. The magic
//! `STRWAL01` names the framing and its version; a reader refuses any other.

use bytes::{BufMut, Bytes, BytesMut};

/// The magic of the current framing (`01`: its version).
pub const MAGIC: &[u8; 8] = b"STRWAL01";
/// Bytes after the footer: its length and the magic.
pub const TRAILER_LEN: usize = 4 + MAGIC.len();

/// Why an object's tail is not a WAL footer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FooterError {
    /// Shorter than a trailer.
    #[error("{0} bytes is too short for a WAL object trailer")]
    TooShort(usize),
    /// Not this framing, or a newer version of it.
    #[error("not a WAL object of a version this build reads (magic {0:?})")]
    Magic(String),
    /// The footer length points outside the bytes given.
    #[error("footer of {len} bytes does not fit in {available}")]
    Length {
        /// The length the trailer states.
        len: u32,
        /// Bytes before the trailer.
        available: usize,
    },
}

/// Appends `footer` and the trailer to the data in `body`.
pub fn finish(body: &mut BytesMut, footer: &[u8]) {
    body.extend_from_slice(footer);
    body.put_u32(footer.len() as u32);
    body.extend_from_slice(MAGIC);
}

/// The footer of a WAL object, from the object or any tail of it that holds the footer.
pub fn footer(tail: &Bytes) -> Result<Bytes, FooterError> {
    if tail.len() < TRAILER_LEN {
        return Err(FooterError::TooShort(tail.len()));
    }
    let magic = &tail[tail.len() - MAGIC.len()..];
    if magic != MAGIC {
        return Err(FooterError::Magic(
            String::from_utf8_lossy(magic).into_owned(),
        ));
    }
    let at = tail.len() - TRAILER_LEN;
    let len = u32::from_be_bytes([tail[at], tail[at + 1], tail[at + 2], tail[at + 3]]);
    let start = at
        .checked_sub(len as usize)
        .ok_or(FooterError::Length { len, available: at })?;
    Ok(tail.slice(start..at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_golden_object_still_parses() {
        // An object as the first WAL writer framed it: 5 data bytes, a 2-byte footer.
        let object = Bytes::from_static(b"abcde{}\x00\x00\x00\x02STRWAL01");
        assert_eq!(footer(&object).unwrap(), Bytes::from_static(b"{}"));
    }

    #[test]
    fn damaged_tails_are_refused() {
        assert_eq!(
            footer(&Bytes::from_static(b"STRWAL01")),
            Err(FooterError::TooShort(8))
        );
        assert!(matches!(
            footer(&Bytes::from_static(b"{}\x00\x00\x00\x02STRWAL02")),
            Err(FooterError::Magic(_))
        ));
        assert_eq!(
            footer(&Bytes::from_static(b"{}\x00\x00\x00\x09STRWAL01")),
            Err(FooterError::Length {
                len: 9,
                available: 2
            })
        );
    }

    proptest! {
        #[test]
        fn footers_round_trip(data in proptest::collection::vec(any::<u8>(), 0..256),
                              foot in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut body = BytesMut::from(&data[..]);
            finish(&mut body, &foot);
            let body = body.freeze();
            prop_assert_eq!(&footer(&body).unwrap()[..], &foot[..]);
            // Any tail that still holds the footer gives it too.
            let tail = body.slice(data.len()..);
            prop_assert_eq!(&footer(&tail).unwrap()[..], &foot[..]);
        }

        #[test]
        fn any_bytes_give_a_footer_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = footer(&Bytes::from(bytes));
        }
    }
}
