//! Ranges of segment files written to a connection: by `sendfile(2)` on a plain TCP socket
//! (the page cache's pages go to the socket with no copy through this process), read into
//! memory and written on any other (TLS encrypts in user space).

use std::future::Future;
use std::io::{Error, ErrorKind};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::io::{Interest, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use stratus_log::file_slice::FileSlice;

/// Most bytes one `sendfile` call is asked for: a slow reader's socket takes what it can,
/// and other connections' writes run between the calls.
const CHUNK: u64 = 1 << 20;

/// A connection's write half that can write a range of a file.
pub trait SendFile: AsyncWrite + Unpin + Send {
    /// Writes `f`'s bytes (anything buffered in front of this half must be flushed first).
    fn send_file<'a>(
        &'a mut self,
        f: &'a FileSlice,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'a {
        async move {
            let file = f.clone();
            let bytes = tokio::task::spawn_blocking(move || file.read())
                .await
                .map_err(Error::other)??;
            self.write_all(&bytes).await
        }
    }
}

impl SendFile for OwnedWriteHalf {
    async fn send_file<'a>(&'a mut self, f: &'a FileSlice) -> std::io::Result<()> {
        let stream: &TcpStream = self.as_ref();
        let (mut at, end) = (f.pos, f.pos + f.len);
        while at < end {
            stream.writable().await?;
            let count = (end - at).min(CHUNK) as usize;
            let sent = stream.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(stream, &*f.file, Some(&mut at), count).map_err(Error::from)
            });
            match sent {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::UnexpectedEof,
                        "the segment file ended inside the range being sent",
                    ))
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<S: tokio::io::AsyncRead + AsyncWrite + Send + Unpin> SendFile for WriteHalf<S> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (s, c)
    }

    fn file_of(data: &[u8]) -> Arc<std::fs::File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        Arc::new(f)
    }

    #[tokio::test]
    async fn a_range_larger_than_the_socket_buffers_arrives_whole_by_either_way() {
        let data: Vec<u8> = (0..9_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = file_of(&data);
        let slice = FileSlice {
            file,
            pos: 12_345,
            len: 8_000_000,
            records: 0,
        };
        let want = data[12_345..8_012_345].to_vec();
        // By sendfile, to a reader slower than the sender (the socket fills).
        let (server, mut client) = pair().await;
        let (_rd, mut wr) = server.into_split();
        let reading = tokio::spawn(async move {
            let mut got = vec![0u8; 8_000_000];
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            client.read_exact(&mut got).await.unwrap();
            got
        });
        wr.send_file(&slice).await.unwrap();
        assert!(reading.await.unwrap() == want);
        // Read and written (a split stream, as TLS connections are).
        let (server, mut client) = pair().await;
        let (_rd, mut wr) = tokio::io::split(server);
        let reading = tokio::spawn(async move {
            let mut got = vec![0u8; 8_000_000];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        wr.send_file(&slice).await.unwrap();
        assert!(reading.await.unwrap() == want);
    }

    #[tokio::test]
    async fn a_range_beyond_the_end_of_the_file_is_an_error_not_a_short_response() {
        let slice = FileSlice {
            file: file_of(&[1u8; 1000]),
            pos: 500,
            len: 1000,
            records: 0,
        };
        let (server, _client) = pair().await;
        let (_rd, mut wr) = server.into_split();
        let e = wr.send_file(&slice).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        let (server, _client) = pair().await;
        let (_rd, mut wr) = tokio::io::split(server);
        let e = wr.send_file(&slice).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
    }
}
