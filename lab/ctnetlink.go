package lab

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/ctprobe/ctprobe/tracer/netns"
	"golang.org/x/sys/unix"
)

// ctnetlink constants (include/uapi/linux/netfilter/nfnetlink.h and
// nfnetlink_conntrack.h).
const (
	nfnlSubsysCtnetlink = 1
	ipctnlMsgCtDelete   = 2
	nfnetlinkV0         = 0
)

// ctFlusher deletes every conntrack entry of one netns, like `conntrack -F`,
// over a ctnetlink socket made in that netns (a netlink socket talks to the
// netns it was created in).
type ctFlusher struct {
	fd  int
	seq uint32
}

func newCtFlusher(ns *Netns) (*ctFlusher, error) {
	f := &ctFlusher{fd: -1}
	err := netns.Run(ns.Path, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("ctnetlink socket: %w", err)
		}
		f.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns.Name, err)
	}
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(f.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(f.fd)
		return nil, err
	}
	if err := unix.Bind(f.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(f.fd)
		return nil, fmt.Errorf("bind ctnetlink socket: %w", err)
	}
	return f, nil
}

// Flush sends IPCTNL_MSG_CT_DELETE without a tuple, which the kernel treats as
// "flush the table" (ctnetlink_flush_conntrack), and waits for the ack.
func (f *ctFlusher) Flush() error {
	f.seq++
	msg := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysCtnetlink<<8|ipctnlMsgCtDelete)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], f.seq)
	msg[16] = unix.AF_UNSPEC // nfgen_family: every family
	msg[17] = nfnetlinkV0
	if err := unix.Sendto(f.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("conntrack flush: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(f.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("conntrack flush: waiting for ack: %w", err)
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			return fmt.Errorf("conntrack flush: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != f.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return fmt.Errorf("conntrack flush: short ack")
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				// EOPNOTSUPP/ENOENT here mean nfnetlink has no conntrack
				// subsystem: ctnetlink is a module of its own.
				return fmt.Errorf("conntrack flush: %w (needs ctnetlink: modprobe nf_conntrack_netlink)", unix.Errno(-code))
			}
			return nil
		}
	}
}

func (f *ctFlusher) Close() {
	if f != nil && f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}

type nlMsg struct {
	Header unix.NlMsghdr
	Data   []byte
}

func parseNetlink(b []byte) ([]nlMsg, error) {
	var out []nlMsg
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return nil, fmt.Errorf("bad netlink message length %d", l)
		}
		h := unix.NlMsghdr{
			Len:   uint32(l),
			Type:  binary.NativeEndian.Uint16(b[4:]),
			Flags: binary.NativeEndian.Uint16(b[6:]),
			Seq:   binary.NativeEndian.Uint32(b[8:]),
			Pid:   binary.NativeEndian.Uint32(b[12:]),
		}
		out = append(out, nlMsg{Header: h, Data: b[unix.NLMSG_HDRLEN:l]})
		al := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return out, nil
}
