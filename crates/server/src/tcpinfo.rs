//! Kernel TCP statistics of a socket (`TCP_INFO`). Linux only; elsewhere every
//! read returns `None` and callers fall back to application-level counts.

use std::os::fd::OwnedFd;

/// The fields of `struct tcp_info` that the test point reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Smoothed RTT (µs).
    pub rtt_us: u32,
    /// Minimum RTT seen on the connection (µs); 0 when the kernel lacks it.
    pub min_rtt_us: u32,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Payload bytes the peer acknowledged (what we sent that arrived).
    pub bytes_acked: u64,
    /// Segments the peer has selectively acknowledged beyond a hole: they
    /// arrived, but the cumulative ACK waits for a retransmission.
    pub sacked: u32,
    /// Sender's maximum segment size.
    pub snd_mss: u32,
    /// Payload bytes received from the peer.
    pub bytes_received: u64,
    /// The kernel's delivery-rate estimate (bytes/s).
    pub delivery_rate: u64,
}

impl TcpInfo {
    /// Payload bytes that reached the peer: cumulatively acknowledged plus
    /// selectively acknowledged beyond a hole. On a lossy link the cumulative
    /// ACK stalls for a retransmission and then jumps; counting SACKed data
    /// too follows what actually crossed the link, smoothly.
    pub fn bytes_delivered(&self) -> u64 {
        self.bytes_acked + u64::from(self.sacked) * u64::from(self.snd_mss)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::TcpInfo;
    use std::os::fd::{AsRawFd, OwnedFd};

    /// Mirror of the kernel's `struct tcp_info` up to `tcpi_delivery_rate`
    /// (Linux ≥ 4.9). Older kernels fill a prefix; the returned length says how much.
    #[repr(C)]
    #[derive(Default)]
    struct RawTcpInfo {
        state: u8,
        ca_state: u8,
        retransmits: u8,
        probes: u8,
        backoff: u8,
        options: u8,
        wscale: u8,
        app_limited: u8,
        rto: u32,
        ato: u32,
        snd_mss: u32,
        rcv_mss: u32,
        unacked: u32,
        sacked: u32,
        lost: u32,
        retrans: u32,
        fackets: u32,
        last_data_sent: u32,
        last_ack_sent: u32,
        last_data_recv: u32,
        last_ack_recv: u32,
        pmtu: u32,
        rcv_ssthresh: u32,
        rtt: u32,
        rttvar: u32,
        snd_ssthresh: u32,
        snd_cwnd: u32,
        advmss: u32,
        reordering: u32,
        rcv_rtt: u32,
        rcv_space: u32,
        total_retrans: u32,
        pacing_rate: u64,
        max_pacing_rate: u64,
        bytes_acked: u64,
        bytes_received: u64,
        segs_out: u32,
        segs_in: u32,
        notsent_bytes: u32,
        min_rtt: u32,
        data_segs_in: u32,
        data_segs_out: u32,
        delivery_rate: u64,
    }

    pub fn read(socket: &OwnedFd) -> Option<TcpInfo> {
        let mut raw = RawTcpInfo::default();
        let mut len = std::mem::size_of::<RawTcpInfo>() as libc::socklen_t;
        // SAFETY: `raw` is a plain-old-data buffer of `len` bytes that the
        // kernel fills; the descriptor is owned and open for the call.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut raw as *mut RawTcpInfo).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        let filled = len as usize;
        let has = |end_offset: usize| filled >= end_offset;
        let offset_after_bytes_received = std::mem::offset_of!(RawTcpInfo, bytes_received) + 8;
        if !has(offset_after_bytes_received) {
            return None;
        }
        Some(TcpInfo {
            rtt_us: raw.rtt,
            min_rtt_us: if has(std::mem::offset_of!(RawTcpInfo, min_rtt) + 4) {
                raw.min_rtt
            } else {
                0
            },
            total_retrans: raw.total_retrans,
            sacked: raw.sacked,
            snd_mss: raw.snd_mss,
            bytes_acked: raw.bytes_acked,
            bytes_received: raw.bytes_received,
            delivery_rate: if has(std::mem::size_of::<RawTcpInfo>()) {
                raw.delivery_rate
            } else {
                0
            },
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::TcpInfo;
    use std::os::fd::OwnedFd;

    pub fn read(_socket: &OwnedFd) -> Option<TcpInfo> {
        None
    }
}

/// Reads `TCP_INFO` of a connected TCP socket; `None` where unsupported.
pub fn read(socket: &OwnedFd) -> Option<TcpInfo> {
    imp::read(socket)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn counts_bytes_on_a_real_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[1u8; 10_000]).unwrap();
        let mut buf = vec![0u8; 10_000];
        server.read_exact(&mut buf).unwrap();
        let sent = super::read(&client.as_fd().try_clone_to_owned().unwrap()).unwrap();
        let received = super::read(&server.as_fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(received.bytes_received, 10_000);
        // The ACK may still be in flight on a busy machine, but never beyond what was sent.
        assert!(sent.bytes_acked <= 10_001, "{sent:?}");
    }
}
