//! Serial devices (radio modems, TNCs) in raw mode at a given speed, read and written
//! without blocking through tokio's `AsyncFd`. Framing (KISS) is done by `framed`.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    pin::Pin,
    task::{Context, Poll, ready},
};

use nix::sys::termios::{self, BaudRate, SetArg};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, unix::AsyncFd};

/// An open serial device.
pub(super) struct SerialPort {
    fd: AsyncFd<File>,
}

/// Opens `path` non-blocking, in raw 8N1 mode at `speed` baud.
pub(super) fn open(path: &Path, speed: u32) -> io::Result<SerialPort> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(path)?;
    let mut settings = termios::tcgetattr(&file).map_err(io::Error::from)?;
    termios::cfmakeraw(&mut settings);
    let baud = baud_rate(speed).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsupported serial speed {speed}"),
        )
    })?;
    termios::cfsetspeed(&mut settings, baud).map_err(io::Error::from)?;
    termios::tcsetattr(&file, SetArg::TCSANOW, &settings).map_err(io::Error::from)?;
    // SAFETY: `register` requires the descriptor to stay open while registered. The `File`
    // that owns it moves into the `AsyncFd` and is only closed when the `AsyncFd` is dropped,
    // which deregisters it first.
    #[allow(unsafe_code)]
    let fd = unsafe { AsyncFd::register(file) }.map_err(io::Error::from)?;
    Ok(SerialPort { fd })
}

fn baud_rate(speed: u32) -> Option<BaudRate> {
    Some(match speed {
        1200 => BaudRate::B1200,
        2400 => BaudRate::B2400,
        4800 => BaudRate::B4800,
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        115200 => BaudRate::B115200,
        230400 => BaudRate::B230400,
        460800 => BaudRate::B460800,
        921600 => BaudRate::B921600,
        _ => return None,
    })
}

impl AsyncRead for SerialPort {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|inner| inner.get_ref().read(buf.initialize_unfilled())) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for SerialPort {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|inner| inner.get_ref().write(data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
