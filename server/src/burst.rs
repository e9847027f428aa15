//! A write buffer that costs nothing while its socket is idle.
//!
//! A socket's writer writes a burst of frames and then flushes once, so
//! the burst goes out in one syscall. tokio's `BufWriter` does that with
//! 8 KiB allocated per socket for its whole life, which is most of an idle
//! socket's memory. `BurstWriter` allocates when a burst starts and gives
//! the memory back after the flush that ends it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// Bytes gathered before the writer writes them out without waiting for a
/// flush, so one burst cannot grow the buffer without bound.
const BURST_LIMIT: usize = 64 * 1024;
/// Capacity kept across flushes; a bigger buffer is freed.
const KEEP: usize = 1024;

pub struct BurstWriter<W> {
    inner: W,
    buf: Vec<u8>,
    /// How much of `buf` the inner writer has taken.
    written: usize,
}

impl<W: AsyncWrite + Unpin> BurstWriter<W> {
    pub fn new(inner: W) -> Self {
        BurstWriter {
            inner,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// Writes out everything gathered, then releases a large buffer.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for BurstWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > BURST_LIMIT {
            ready!(this.poll_write_out(cx))?;
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.buf.len() + total > BURST_LIMIT {
            ready!(this.poll_write_out(cx))?;
        }
        this.buf.reserve(total);
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_burst_arrives_whole_and_in_order_and_the_buffer_is_released() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut writer = BurstWriter::new(client);
        let mut expected = Vec::new();
        for i in 0..10_000u32 {
            let chunk = format!("frame {i};");
            writer.write_all(chunk.as_bytes()).await.unwrap();
            expected.extend_from_slice(chunk.as_bytes());
        }
        assert!(writer.buf.len() <= BURST_LIMIT);
        writer.flush().await.unwrap();
        assert_eq!(
            writer.buf.capacity(),
            0,
            "a large buffer is freed after the flush"
        );
        drop(writer);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn nothing_is_written_before_the_flush_of_a_small_burst() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut writer = BurstWriter::new(client);
        writer.write_all(b"hello").await.unwrap();
        let mut byte = [0u8; 1];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), server.read(&mut byte))
                .await;
        assert!(early.is_err(), "bytes went out before the flush");
        writer.flush().await.unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }
}
