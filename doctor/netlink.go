package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Netlink reads: which nftables tables and which tunnel devices a namespace
// has, asked of the kernel from a thread inside it (the socket belongs to
// the netns it was created in).

// nfnetlink message types (include/uapi/linux/netfilter/nfnetlink.h,
// nf_tables.h): NFNL_SUBSYS_NFTABLES is 10, NFT_MSG_NEWTABLE 0,
// NFT_MSG_GETTABLE 1; NFTA_TABLE_NAME is attribute 1.
const (
	nfnlSubsysNftables = 10
	nftMsgNewTable     = 0
	nftMsgGetTable     = 1
	nftaTableName      = 1
)

// nftFamilies names the nfgen_family values of nf_tables.
var nftFamilies = map[uint8]string{
	unix.AF_INET: "ip", unix.AF_INET6: "ip6", unix.AF_UNSPEC: "unspec", 1: "inet",
	unix.AF_BRIDGE: "bridge", 3: "arp", 5: "netdev",
}

// nftTables lists the nftables tables of the calling thread's netns as
// "FAMILY NAME". A kernel without nf_tables has none.
func nftTables() ([]string, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, nil
		}
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], nfnlSubsysNftables<<8|nftMsgGetTable)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence
	// nfgenmsg: family AF_UNSPEC (every family), version 0, res_id 0.
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var tables []string
	buf := make([]byte, 64*1024)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		got, done, err := parseNftTableDump(buf[:n])
		tables = append(tables, got...)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPROTONOSUPPORT) {
				return tables, nil // nf_tables is not there
			}
			return nil, err
		}
		if done {
			return tables, nil
		}
	}
}

// parseNftTableDump reads one datagram of an NFT_MSG_GETTABLE dump: the
// tables it names, whether the dump is done, and a netlink error.
func parseNftTableDump(b []byte) (tables []string, done bool, err error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, false, fmt.Errorf("netlink: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_DONE:
			return tables, true, nil
		case unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				return tables, true, errors.New("netlink: short error message")
			}
			if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
				return tables, true, fmt.Errorf("netlink: %w", unix.Errno(-e))
			}
			return tables, true, nil
		case nfnlSubsysNftables<<8 | nftMsgNewTable:
			if len(m.Data) < 4 {
				continue
			}
			fam, ok := nftFamilies[m.Data[0]]
			if !ok {
				fam = fmt.Sprint(m.Data[0])
			}
			name := ""
			for _, a := range netlinkAttrs(m.Data[4:]) {
				if a.typ == nftaTableName {
					name = unix.ByteSliceToString(a.val)
				}
			}
			tables = append(tables, fam+" "+name)
		}
	}
	return tables, false, nil
}

type netlinkAttr struct {
	typ uint16
	val []byte
}

// netlinkAttrs splits a run of netlink attributes (struct nlattr, 4-byte
// aligned); a truncated one ends the run.
func netlinkAttrs(b []byte) []netlinkAttr {
	var out []netlinkAttr
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			break
		}
		out = append(out, netlinkAttr{typ: binary.NativeEndian.Uint16(b[2:]) &^ unix.NLA_F_NESTED, val: b[4:l]})
		l = (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return out
}

// tunnelKinds are the link kinds whose driver sends the encapsulated packet
// through POSTROUTING again in the same skb, mark included (docs/kernel-notes.md,
// The VXLAN double-SNAT fault).
var tunnelKinds = map[string]bool{
	"vxlan": true, "geneve": true, "ipip": true, "sit": true, "gre": true, "gretap": true,
	"ip6gre": true, "ip6gretap": true, "ip6tnl": true, "bareudp": true,
}

// tunnelDevices lists the calling thread's netns's tunnel devices as
// "NAME (KIND)".
func tunnelDevices() ([]string, error) {
	b, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("netlink links: %w", err)
	}
	return parseLinkDump(b)
}

// parseLinkDump reads an RTM_GETLINK dump for tunnel devices.
func parseLinkDump(b []byte) ([]string, error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, fmt.Errorf("netlink links: %w", err)
	}
	var out []string
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		var name, kind string
		for _, a := range netlinkAttrs(m.Data[unix.SizeofIfInfomsg:]) {
			switch a.typ {
			case unix.IFLA_IFNAME:
				name = unix.ByteSliceToString(a.val)
			case unix.IFLA_LINKINFO:
				for _, li := range netlinkAttrs(a.val) {
					if li.typ == unix.IFLA_INFO_KIND {
						kind = unix.ByteSliceToString(li.val)
					}
				}
			}
		}
		if tunnelKinds[kind] {
			out = append(out, name+" ("+kind+")")
		}
	}
	return out, nil
}
