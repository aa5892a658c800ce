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
	ipctnlMsgCtNew      = 0
	ipctnlMsgCtDelete   = 2
	nfnetlinkV0         = 0

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaTimeout    = 7
	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3
	nlaFNested    = 1 << 15
)

// ctnl is a ctnetlink socket made in one netns (a netlink socket talks to
// the netns it was created in): it flushes that netns's table, like
// `conntrack -F`, and fills it with entries, like `conntrack -I`.
type ctnl struct {
	fd  int
	seq uint32
}

func newCtnl(ns *Netns) (*ctnl, error) {
	f := &ctnl{fd: -1}
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
func (f *ctnl) Flush() error {
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

// fillBatch is how many creations go out in one send.
const fillBatch = 64

// Fill creates n unreplied UDP entries 10.253.x.y:port -> 10.254.0.1:53
// that live timeout, and returns how many the kernel refused (a full
// table, a hash chain too long: they count in that netns). Entries made
// this way take room in the one hash table every netns shares without a
// packet, so no probe runs for them.
func (f *ctnl) Fill(n int, timeout time.Duration) (refused int, err error) {
	var msg []byte
	for i := 0; i < n; i += fillBatch {
		msg = msg[:0]
		first := f.seq + 1
		for j := i; j < min(n, i+fillBatch); j++ {
			f.seq++
			msg = appendCtNew(msg, f.seq, [4]byte{10, 253, byte(j >> 16), byte(j >> 8)}, uint16(1024+j&0xff), timeout)
		}
		if err := unix.Sendto(f.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return refused, fmt.Errorf("conntrack fill: %w", err)
		}
		r, err := f.acks(first, f.seq)
		refused += r
		if err != nil {
			return refused, err
		}
	}
	return refused, nil
}

// acks reads the acks of requests first..last and counts the refused.
func (f *ctnl) acks(first, last uint32) (refused int, err error) {
	buf := make([]byte, 64<<10)
	for got := first; got <= last; {
		n, _, err := unix.Recvfrom(f.fd, buf, 0)
		if err != nil {
			return refused, fmt.Errorf("conntrack fill: waiting for acks: %w", err)
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			return refused, fmt.Errorf("conntrack fill: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq < first || m.Header.Seq > last || len(m.Data) < 4 {
				continue
			}
			got++
			switch code := unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data))); code {
			case 0:
			case unix.ENOSPC, unix.ENOMEM, unix.EEXIST:
				refused++
			default:
				return refused, fmt.Errorf("conntrack fill: %w (needs ctnetlink: modprobe nf_conntrack_netlink)", code)
			}
		}
	}
	return refused, nil
}

// appendCtNew appends an IPCTNL_MSG_CT_NEW request for the UDP entry
// src:sport -> 10.254.0.1:53 with its inverse as reply.
func appendCtNew(b []byte, seq uint32, src [4]byte, sport uint16, timeout time.Duration) []byte {
	start := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set below
	b = binary.NativeEndian.AppendUint16(b, nfnlSubsysCtnetlink<<8|ipctnlMsgCtNew)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, unix.AF_INET, nfnetlinkV0, 0, 0)
	dst := [4]byte{10, 254, 0, 1}
	tuple := func(b []byte, typ uint16, a, z [4]byte, ap, zp uint16) []byte {
		return nlaNest(b, typ, func(b []byte) []byte {
			b = nlaNest(b, ctaTupleIP, func(b []byte) []byte {
				return nla(nla(b, ctaIPv4Src, a[:]), ctaIPv4Dst, z[:])
			})
			return nlaNest(b, ctaTupleProto, func(b []byte) []byte {
				b = nla(b, ctaProtoNum, []byte{unix.IPPROTO_UDP})
				b = nla(b, ctaProtoSrc, binary.BigEndian.AppendUint16(nil, ap))
				return nla(b, ctaProtoDst, binary.BigEndian.AppendUint16(nil, zp))
			})
		})
	}
	b = tuple(b, ctaTupleOrig, src, dst, sport, 53)
	b = tuple(b, ctaTupleReply, dst, src, 53, sport)
	b = nla(b, ctaTimeout, binary.BigEndian.AppendUint32(nil, uint32(timeout/time.Second)))
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// nla appends a netlink attribute, padded to 4 bytes.
func nla(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nlaNest appends a nested attribute whose payload fill writes.
func nlaNest(b []byte, typ uint16, fill func([]byte) []byte) []byte {
	start := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = fill(b)
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	binary.NativeEndian.PutUint16(b[start+2:], typ|nlaFNested)
	return b
}

func (f *ctnl) Close() {
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
