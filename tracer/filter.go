package tracer

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/plan"
)

// ParseFilter builds a Filter from strings (as a command line gives them);
// empty means any. Errors start with the field's name (proto, host, port,
// netns, pid), then say which value is wrong and what is accepted.
func ParseFilter(proto, host, port, netns, pid string) (Filter, error) {
	var f Filter
	if proto != "" {
		if p, ok := event.ProtoNumber(proto); ok {
			f.Proto = p
		} else if n, err := strconv.ParseUint(proto, 10, 8); err == nil && n > 0 {
			f.Proto = uint8(n)
		} else {
			return f, fmt.Errorf("proto %q: want udp, tcp, icmp, icmpv6, sctp, gre, udplite, dccp or a protocol number 1-255", proto)
		}
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return f, fmt.Errorf("host %q: want an IPv4 or IPv6 address such as 10.96.0.10", host)
		}
		f.Host = a.Unmap()
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return f, fmt.Errorf("port %q: want a port number 1-65535", port)
		}
		f.Port = uint16(n)
	}
	if netns != "" {
		n, err := strconv.ParseUint(netns, 10, 32)
		if err != nil || n == 0 {
			return f, fmt.Errorf("netns %q: want a netns inode number as `ls -Li /proc/PID/ns/net` or `lsns -t net` print it", netns)
		}
		f.Netns = uint32(n)
	}
	if pid != "" {
		n, err := strconv.ParseUint(pid, 10, 32)
		if err != nil || n == 0 {
			return f, fmt.Errorf("pid %q: want a process id", pid)
		}
		f.PID = uint32(n)
	}
	return f, nil
}

// ParseAttach parses --attach: auto, fentry or kprobe.
func ParseAttach(s string) (plan.Attach, error) {
	switch s {
	case "", "auto":
		return "", nil
	case string(plan.Fentry), string(plan.Kprobe):
		return plan.Attach(s), nil
	}
	return "", fmt.Errorf("attach %q: want auto, fentry or kprobe", s)
}

// ParseSkip parses --skip-point: a comma-separated list of optional probe
// points.
func ParseSkip(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if !slices.Contains(SkippablePoints, p) {
			return nil, fmt.Errorf("probe point %q cannot be skipped: want a comma-separated list of %s", p, strings.Join(SkippablePoints, ", "))
		}
		out = append(out, p)
	}
	return out, nil
}

// Strings is the filter as the flags that select it, for capture headers.
func (f Filter) Strings() map[string]string {
	m := map[string]string{}
	if f.Proto != 0 {
		m["proto"] = event.ProtoName(f.Proto)
	}
	if f.Host.IsValid() {
		m["host"] = f.Host.String()
	}
	if f.Port != 0 {
		m["port"] = strconv.Itoa(int(f.Port))
	}
	if f.Netns != 0 {
		m["netns"] = strconv.FormatUint(uint64(f.Netns), 10)
	}
	if f.PID != 0 {
		m["pid"] = strconv.FormatUint(uint64(f.PID), 10)
	}
	return m
}
