package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/netns"
)

// ctnetlink constants (include/uapi/linux/netfilter/nfnetlink.h,
// nfnetlink_conntrack.h and nf_conntrack_common.h).
const (
	nfnlSubsysCtnetlink = 1
	ipctnlMsgCtNew      = 0
	ipctnlMsgCtGet      = 1
	ipctnlMsgCtDelete   = 2
	nfnetlinkV0         = 0

	ctaTupleOrig  = 1 // enum ctattr_type
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaTimeout    = 7
	ctaTupleIP    = 1 // enum ctattr_tuple
	ctaTupleProt  = 2
	ctaIPv4Src    = 1 // enum ctattr_ip
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoNum   = 1 // enum ctattr_l4proto
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	// ipsSeenReply is IPS_SEEN_REPLY: a packet of the entry's reply
	// direction has passed.
	ipsSeenReply = 1 << 1
)

// ctnetlinkSocket talks to the conntrack table of one netns over a
// ctnetlink socket made in that netns (a netlink socket talks to the netns
// it was created in): race 4's flush between lookups, an established
// flood's look at its flows, a table filled with entries like
// `conntrack -I` (table-full, chain-too-long).
type ctnetlinkSocket struct {
	fd  int
	seq uint32
}

func newCtnetlink(ns *Netns) (*ctnetlinkSocket, error) {
	f := &ctnetlinkSocket{fd: -1}
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

// errNoEntry is the kernel's answer to a get of a tuple it has no entry for.
var errNoEntry = errors.New("no conntrack entry")

// request sends a ctnetlink message of type msgType for family with the
// attributes attrs, and returns the data of the reply of type replyType, if
// any, once the kernel has acked the request.
func (f *ctnetlinkSocket) request(msgType uint16, family uint8, attrs []byte, replyType uint16) ([]byte, error) {
	f.seq++
	msg := make([]byte, unix.NLMSG_HDRLEN+4, unix.NLMSG_HDRLEN+4+len(attrs))
	msg = append(msg, attrs...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysCtnetlink<<8|msgType)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], f.seq)
	msg[16] = family // nfgen_family
	msg[17] = nfnetlinkV0
	if err := unix.Sendto(f.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var reply []byte
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(f.fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("waiting for the kernel's answer: %w", err)
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch {
			case m.Header.Seq != f.seq:
			case m.Header.Type == nfnlSubsysCtnetlink<<8|replyType:
				reply = append([]byte(nil), m.Data...)
			case m.Header.Type == unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("short ack")
				}
				switch code := -int32(binary.NativeEndian.Uint32(m.Data)); {
				case code == 0:
					return reply, nil
				case unix.Errno(code) == unix.ENOENT && msgType == ipctnlMsgCtGet:
					return nil, errNoEntry
				default:
					// EOPNOTSUPP/ENOENT here mean nfnetlink has no
					// conntrack subsystem: ctnetlink is a module of its own.
					return nil, fmt.Errorf("%w (needs ctnetlink: modprobe nf_conntrack_netlink)", unix.Errno(code))
				}
			}
		}
	}
}

// Flush sends IPCTNL_MSG_CT_DELETE without a tuple, which the kernel treats as
// "flush the table" (ctnetlink_flush_conntrack), and waits for the ack.
func (f *ctnetlinkSocket) Flush() error {
	if _, err := f.request(ipctnlMsgCtDelete, unix.AF_UNSPEC, nil, 0); err != nil {
		return fmt.Errorf("conntrack flush: %w", err)
	}
	return nil
}

// Status returns the status bits (IPS_*) of the entry whose original tuple
// is proto from src to dst, or errNoEntry.
func (f *ctnetlinkSocket) Status(proto uint8, src, dst netip.AddrPort) (uint32, error) {
	family, srcType, dstType := uint8(unix.AF_INET), uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if src.Addr().Is6() {
		family, srcType, dstType = unix.AF_INET6, ctaIPv6Src, ctaIPv6Dst
	}
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	tuple := nlAttr(ctaTupleOrig|unix.NLA_F_NESTED,
		nlAttr(ctaTupleIP|unix.NLA_F_NESTED,
			nlAttr(srcType, src.Addr().AsSlice()), nlAttr(dstType, dst.Addr().AsSlice())),
		nlAttr(ctaTupleProt|unix.NLA_F_NESTED,
			nlAttr(ctaProtoNum, []byte{proto}), nlAttr(ctaProtoSrc, port(src.Port())), nlAttr(ctaProtoDst, port(dst.Port()))))
	reply, err := f.request(ipctnlMsgCtGet, family, tuple, ipctnlMsgCtNew)
	if err != nil {
		if errors.Is(err, errNoEntry) {
			return 0, err
		}
		return 0, fmt.Errorf("conntrack get %s -> %s: %w", src, dst, err)
	}
	if len(reply) < 4 {
		return 0, fmt.Errorf("conntrack get %s -> %s: short answer", src, dst)
	}
	for b := reply[4:]; len(b) >= unix.NLA_HDRLEN; { // after struct nfgenmsg
		l, typ := int(binary.NativeEndian.Uint16(b)), binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER)
		if l < unix.NLA_HDRLEN || l > len(b) {
			break
		}
		if typ == ctaStatus && l == unix.NLA_HDRLEN+4 {
			return binary.BigEndian.Uint32(b[unix.NLA_HDRLEN:]), nil
		}
		b = b[min(len(b), (l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1)):]
	}
	return 0, fmt.Errorf("conntrack get %s -> %s: no status in the answer", src, dst)
}

// nlAttr encodes a netlink attribute of type typ holding data and then the
// attributes nested (each already encoded and padded).
func nlAttr(typ uint16, data []byte, nested ...[]byte) []byte {
	l := unix.NLA_HDRLEN + len(data)
	for _, n := range nested {
		l += len(n)
	}
	b := binary.NativeEndian.AppendUint16(nil, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for _, n := range nested {
		b = append(b, n...)
	}
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// fillBatch is how many creations go out in one send.
const fillBatch = 64

// Fill creates n unreplied UDP entries 10.253.x.y:port -> 10.254.0.1:53
// that live timeout, and returns how many the kernel refused (a full
// table, a hash chain too long: they count in that netns). Entries made
// this way take room in the one hash table every netns shares without a
// packet, so no probe runs for them.
func (f *ctnetlinkSocket) Fill(n int, timeout time.Duration) (refused int, err error) {
	var msg []byte
	for i := 0; i < n; i += fillBatch {
		msg = msg[:0]
		first := f.seq + 1
		for j := i; j < min(n, i+fillBatch); j++ {
			f.seq++
			msg = appendCtNew(msg, f.seq, netip.AddrFrom4([4]byte{10, 253, byte(j >> 16), byte(j >> 8)}), uint16(1024+j&0xff), timeout)
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
func (f *ctnetlinkSocket) acks(first, last uint32) (refused int, err error) {
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
func appendCtNew(b []byte, seq uint32, src netip.Addr, sport uint16, timeout time.Duration) []byte {
	start := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set below
	b = binary.NativeEndian.AppendUint16(b, nfnlSubsysCtnetlink<<8|ipctnlMsgCtNew)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, unix.AF_INET, nfnetlinkV0, 0, 0)
	dst := netip.AddrFrom4([4]byte{10, 254, 0, 1})
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	tuple := func(typ uint16, a, z netip.Addr, ap, zp uint16) []byte {
		return nlAttr(typ|unix.NLA_F_NESTED,
			nlAttr(ctaTupleIP|unix.NLA_F_NESTED, nlAttr(ctaIPv4Src, a.AsSlice()), nlAttr(ctaIPv4Dst, z.AsSlice())),
			nlAttr(ctaTupleProt|unix.NLA_F_NESTED,
				nlAttr(ctaProtoNum, []byte{unix.IPPROTO_UDP}), nlAttr(ctaProtoSrc, port(ap)), nlAttr(ctaProtoDst, port(zp))))
	}
	b = append(b, tuple(ctaTupleOrig, src, dst, sport, 53)...)
	b = append(b, tuple(ctaTupleReply, dst, src, 53, sport)...)
	b = append(b, nlAttr(ctaTimeout, binary.BigEndian.AppendUint32(nil, uint32(timeout/time.Second)))...)
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func (f *ctnetlinkSocket) Close() {
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
