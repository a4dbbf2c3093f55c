//! Reading request frames: a 4-byte size, then the body. The reader keeps what it has read
//! between calls, so a read may be abandoned (an idle or authentication timeout firing in a
//! `select!`) and resumed without losing a byte. A frame's size is checked against the limit
//! before its body is read, and its bytes are taken from the broker-wide request memory
//! (`queued.max.request.bytes`) first, so buffered requests are bounded.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The frames of one connection.
#[derive(Default)]
pub struct FrameReader {
    size: [u8; 4],
    size_read: usize,
    /// The body read so far, its length and its memory.
    body: Option<(BytesMut, usize, OwnedSemaphorePermit)>,
}

/// The largest frame allowed now, and the setting that says so (for the error).
#[derive(Clone, Copy)]
pub struct Limit {
    /// Bytes.
    pub max: usize,
    /// `socket.request.max.bytes`, or `sasl.server.max.receive.size` before authentication.
    pub setting: &'static str,
}

impl FrameReader {
    /// The next frame and the request memory it holds; `None` on a clean end of stream.
    /// Cancel-safe: every await point either read nothing or kept what it read.
    pub async fn next(
        &mut self,
        rd: &mut (impl AsyncRead + Unpin),
        limit: Limit,
        memory: &Arc<Semaphore>,
        memory_total: usize,
    ) -> std::io::Result<Option<(Bytes, OwnedSemaphorePermit)>> {
        loop {
            let Some((buf, len, _)) = &mut self.body else {
                if self.size_read < 4 {
                    let n = rd.read(&mut self.size[self.size_read..]).await?;
                    if n == 0 {
                        return if self.size_read == 0 {
                            Ok(None)
                        } else {
                            Err(std::io::ErrorKind::UnexpectedEof.into())
                        };
                    }
                    self.size_read += n;
                    continue;
                }
                let len = i32::from_be_bytes(self.size);
                if len < 0 || len as usize > limit.max {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "request of {len} bytes is larger than {} ({})",
                            limit.setting, limit.max
                        ),
                    ));
                }
                let permits = (len as usize).clamp(1, memory_total) as u32;
                let permit = memory
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    .map_err(|_| std::io::Error::other("broker shutting down"))?;
                // Not zeroed first: the reads fill it.
                let len = len as usize;
                self.body = Some((BytesMut::with_capacity(len), len, permit));
                continue;
            };
            if buf.len() == *len {
                let Some((buf, _, permit)) = self.body.take() else {
                    continue;
                };
                self.size_read = 0;
                return Ok(Some((buf.freeze(), permit)));
            }
            // Never past the frame: the next frame's bytes stay in the stream.
            let want = *len - buf.len();
            let n = rd.read_buf(&mut (&mut *buf).limit(want)).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// The client id of a request frame (every request header version carries it as a
/// nullable INT16-length string after the API key, version and correlation id); `None`
/// when null, not UTF-8 or cut short.
pub fn client_id(frame: &[u8]) -> Option<&str> {
    let len = i16::from_be_bytes(frame.get(8..10)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    std::str::from_utf8(frame.get(10..10 + len)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    const LIMIT: Limit = Limit {
        max: 1 << 20,
        setting: "socket.request.max.bytes",
    };

    #[tokio::test]
    async fn an_abandoned_read_loses_nothing() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let memory = Arc::new(Semaphore::new(1 << 20));
        let mut frames = FrameReader::default();
        let body = vec![7u8; 100];
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend(&body);
        // The frame arrives in pieces; every read of a piece is abandoned by a timeout.
        for piece in wire.chunks(13) {
            client.write_all(piece).await.unwrap();
            let r = tokio::time::timeout(
                Duration::from_millis(20),
                frames.next(&mut server, LIMIT, &memory, 1 << 20),
            )
            .await;
            if let Ok(got) = r {
                let (frame, _) = got.unwrap().unwrap();
                assert_eq!(&frame[..], &body[..]);
                return;
            }
        }
        panic!("the frame never came out whole");
    }

    #[tokio::test]
    async fn frames_sent_back_to_back_come_out_whole_and_apart() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let memory = Arc::new(Semaphore::new(1 << 20));
        let bodies: Vec<Vec<u8>> = vec![vec![1; 3000], vec![], vec![2; 5], vec![3; 70_000]];
        let mut wire = Vec::new();
        for b in &bodies {
            wire.extend((b.len() as u32).to_be_bytes());
            wire.extend(b);
        }
        // All of it written at once: a read may find the next frame's bytes waiting.
        let writer = tokio::spawn(async move {
            client.write_all(&wire).await.unwrap();
            client
        });
        let mut frames = FrameReader::default();
        for b in &bodies {
            let (frame, permit) = frames
                .next(&mut server, LIMIT, &memory, 1 << 20)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&frame[..], &b[..]);
            assert_eq!(permit.num_permits(), b.len().max(1));
        }
        drop(writer.await.unwrap());
        assert!(frames
            .next(&mut server, LIMIT, &memory, 1 << 20)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn an_oversize_frame_is_refused_before_its_body_and_names_the_setting() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let memory = Arc::new(Semaphore::new(1 << 20));
        client.write_all(&(600_000u32).to_be_bytes()).await.unwrap();
        let limit = Limit {
            max: 524_288,
            setting: "sasl.server.max.receive.size",
        };
        let err = FrameReader::default()
            .next(&mut server, limit, &memory, 1 << 20)
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("sasl.server.max.receive.size (524288)"),
            "{err}"
        );
        drop(client);
        let clean = FrameReader::default()
            .next(&mut server, LIMIT, &memory, 1 << 20)
            .await
            .unwrap();
        assert!(
            clean.is_none(),
            "a closed stream with nothing pending ends cleanly"
        );
    }

    #[test]
    fn the_client_id_is_read_from_any_header() {
        let mut f = vec![0, 0, 0, 9, 0, 0, 0, 1, 0, 3];
        f.extend_from_slice(b"app");
        assert_eq!(client_id(&f), Some("app"));
        assert_eq!(client_id(&[0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff]), None);
        assert_eq!(client_id(&[0, 0, 0, 9, 0, 0, 0, 1, 0, 9, b'a']), None);
        assert_eq!(client_id(&[0, 1]), None);
    }
}
