package doctor

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// nftDoc is the output of `nft -j list ruleset` (libnftables-json(5)):
// a list of objects, each with one key: metainfo, table, chain, rule, set...
type nftDoc struct {
	Nftables []map[string]json.RawMessage `json:"nftables"`
}

type nftChain struct {
	Family, Table, Name, Hook string
}

type nftRule struct {
	Family string            `json:"family"`
	Table  string            `json:"table"`
	Chain  string            `json:"chain"`
	Expr   []json.RawMessage `json:"expr"`
}

// ParseNftJSON reads `nft -j list ruleset` into the rules of its nat
// chains (chains of type nat, and the regular chains of the same tables,
// which they may jump to). skip names tables ("ip nat") read another way
// (iptables-nft-save) and left out here. It also returns the tables that
// iptables-nft made (they hold xt expressions, which nft cannot show).
func ParseNftJSON(data []byte, skip map[string]bool) (rules []Rule, xtTables []string, err error) {
	var doc nftDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("nft -j: %w", err)
	}
	natTables := map[string]bool{}
	base := map[string]bool{}
	for _, obj := range doc.Nftables {
		raw, ok := obj["chain"]
		if !ok {
			continue
		}
		var c struct{ Family, Table, Name, Type, Hook string }
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, nil, fmt.Errorf("nft -j: chain: %w", err)
		}
		if c.Type == "nat" {
			natTables[c.Family+" "+c.Table] = true
		}
		if c.Hook != "" {
			base[c.Family+" "+c.Table+" "+c.Name] = true
		}
	}
	xt := map[string]bool{}
	for _, obj := range doc.Nftables {
		raw, ok := obj["rule"]
		if !ok {
			continue
		}
		var nr nftRule
		if err := json.Unmarshal(raw, &nr); err != nil {
			return nil, nil, fmt.Errorf("nft -j: rule: %w", err)
		}
		key := nr.Family + " " + nr.Table
		if !natTables[key] || skip[key] {
			continue
		}
		r := Rule{Tool: "nft", Family: nr.Family, Table: nr.Table, Chain: nr.Chain, Base: base[key+" "+nr.Chain]}
		var text []string
		for _, e := range nr.Expr {
			t, isXt, err := nftExpr(&r, e)
			if err != nil {
				return nil, nil, fmt.Errorf("nft -j: rule in %s chain %s: %w", key, nr.Chain, err)
			}
			if isXt && !xt[key] {
				xt[key] = true
				xtTables = append(xtTables, key)
			}
			if t != "" {
				text = append(text, t)
			}
		}
		r.Text = strings.Join(text, " ")
		rules = append(rules, r)
	}
	return rules, xtTables, nil
}

// nftExpr applies one statement of a rule to r and returns how it reads.
func nftExpr(r *Rule, raw json.RawMessage) (text string, xt bool, err error) {
	var e map[string]json.RawMessage
	if err := json.Unmarshal(raw, &e); err != nil {
		return "", false, err
	}
	for k, v := range e {
		switch k {
		case "match":
			var m struct {
				Op    string          `json:"op"`
				Left  json.RawMessage `json:"left"`
				Right json.RawMessage `json:"right"`
			}
			if err := json.Unmarshal(v, &m); err != nil {
				return "", false, err
			}
			return nftMatch(r, m.Op, m.Left, m.Right), false, nil
		case "jump", "goto":
			var j struct{ Target string }
			if err := json.Unmarshal(v, &j); err != nil {
				return "", false, err
			}
			r.Jumps = append(r.Jumps, j.Target)
			return k + " " + j.Target, false, nil
		case "vmap":
			var m struct {
				Key  json.RawMessage `json:"key"`
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(v, &m); err != nil {
				return "", false, err
			}
			for _, el := range nftSetElems(m.Data) {
				var verdict map[string]struct{ Target string }
				if json.Unmarshal(el, &verdict) == nil {
					for _, t := range verdict {
						if t.Target != "" {
							r.Jumps = append(r.Jumps, t.Target)
						}
					}
				}
			}
			return nftValue(m.Key) + " vmap " + nftValue(m.Data), false, nil
		case "return":
			r.Return = true
			return "return", false, nil
		case "dnat", "snat", "masquerade":
			return nftNAT(r, k, v), false, nil
		case "mangle":
			var m struct {
				Key   json.RawMessage `json:"key"`
				Value json.RawMessage `json:"value"`
			}
			if err := json.Unmarshal(v, &m); err != nil {
				return "", false, err
			}
			if nftValue(m.Key) == "meta mark" {
				r.SetMark = nftMarkOp(m.Value)
			}
			return nftValue(m.Key) + " set " + nftValue(m.Value), false, nil
		case "xt":
			var x struct{ Type, Name string }
			json.Unmarshal(v, &x)
			return "xt " + x.Type + " " + x.Name, true, nil
		case "counter":
			return "", false, nil
		default:
			return k + " " + nftValue(v), false, nil
		}
	}
	return "", false, nil
}

// nftMatch reads a match: addresses, protocol, port, mark.
func nftMatch(r *Rule, op string, left, right json.RawMessage) string {
	l, rv := nftValue(left), nftValue(right)
	neg := op == "!="
	switch l {
	case "ip daddr", "ip6 daddr":
		r.Dst, r.DstNeg = rv, neg
	case "ip saddr", "ip6 saddr":
		r.Src, r.SrcNeg = rv, neg
	case "meta l4proto", "ip protocol", "ip6 nexthdr":
		if !neg {
			r.Proto = rv
		}
	case "udp dport", "tcp dport", "th dport":
		if !neg {
			r.DstPort = rv
		}
		if p, _, _ := strings.Cut(l, " "); p != "th" && !neg {
			r.Proto = p
		}
	case "meta mark":
		if v, err := strconv.ParseUint(rv, 0, 32); err == nil {
			r.Mark = &MarkMatch{Value: uint32(v), Mask: 0xffffffff, Negated: neg}
		}
	default:
		// meta mark & MASK
		var and struct {
			And []json.RawMessage `json:"&"`
		}
		if json.Unmarshal(left, &and) == nil && len(and.And) == 2 && nftValue(and.And[0]) == "meta mark" {
			mask, err1 := strconv.ParseUint(nftValue(and.And[1]), 0, 32)
			v, err2 := strconv.ParseUint(rv, 0, 32)
			if err1 == nil && err2 == nil {
				r.Mark = &MarkMatch{Value: uint32(v), Mask: uint32(mask), Negated: neg}
			}
		}
	}
	if op == "" || op == "==" || op == "in" {
		return l + " " + rv
	}
	return l + " " + op + " " + rv
}

// nftMarkOp reads the value of "meta mark set VALUE".
func nftMarkOp(value json.RawMessage) *MarkOp {
	if v, err := strconv.ParseUint(nftValue(value), 0, 32); err == nil {
		return &MarkOp{Op: "set", Value: uint32(v), Mask: 0xffffffff}
	}
	var bin map[string][]json.RawMessage
	if json.Unmarshal(value, &bin) != nil {
		return nil
	}
	for op, args := range bin {
		if len(args) != 2 || nftValue(args[0]) != "meta mark" {
			continue
		}
		v, err := strconv.ParseUint(nftValue(args[1]), 0, 32)
		if err != nil {
			continue
		}
		switch op {
		case "|":
			return &MarkOp{Op: "or", Value: uint32(v)}
		case "^":
			return &MarkOp{Op: "xor", Value: uint32(v)}
		case "&":
			return &MarkOp{Op: "and", Value: uint32(v)}
		}
	}
	return nil
}

// nftNAT reads a dnat, snat or masquerade statement.
func nftNAT(r *Rule, kind string, v json.RawMessage) string {
	n := &NAT{Kind: kind}
	r.NAT = n
	var s struct {
		Addr  json.RawMessage `json:"addr"`
		Port  json.RawMessage `json:"port"`
		Flags json.RawMessage `json:"flags"`
	}
	if len(v) > 0 && string(v) != "null" {
		json.Unmarshal(v, &s)
	}
	text := kind
	if len(s.Addr) > 0 {
		var m struct {
			Map *struct {
				Key  json.RawMessage `json:"key"`
				Data json.RawMessage `json:"data"`
			} `json:"map"`
		}
		if json.Unmarshal(s.Addr, &m) == nil && m.Map != nil {
			for _, el := range nftSetElems(m.Map.Data) {
				n.To = append(n.To, nftValue(el))
			}
		} else {
			n.To = append(n.To, nftValue(s.Addr))
		}
		text += " to " + nftValue(s.Addr)
	}
	if len(s.Port) > 0 {
		p := nftValue(s.Port)
		n.PortMin, n.PortMax, _ = parsePortRange(p)
		text += " port " + p
	}
	if len(s.Flags) > 0 {
		var flags []string
		if json.Unmarshal(s.Flags, &flags) != nil {
			var one string
			json.Unmarshal(s.Flags, &one)
			flags = []string{one}
		}
		for _, f := range flags {
			switch f {
			case "random":
				n.Random = true
			case "fully-random":
				n.RandomFully = true
			}
		}
		text += " " + strings.Join(flags, ",")
	}
	return text
}

// nftSetElems returns the data of each element of {"set": [[key, data], ...]}
// (a map) or {"set": [data, ...]}.
func nftSetElems(data json.RawMessage) []json.RawMessage {
	var s struct {
		Set []json.RawMessage `json:"set"`
	}
	if json.Unmarshal(data, &s) != nil {
		return nil
	}
	var out []json.RawMessage
	for _, el := range s.Set {
		var pair []json.RawMessage
		if json.Unmarshal(el, &pair) == nil && len(pair) == 2 {
			out = append(out, pair[1])
			continue
		}
		out = append(out, el)
	}
	return out
}

// nftValue renders an expression the way nft writes it, closely enough for
// evidence and matching: "ip daddr", "meta mark", "10.96.0.10",
// "10.0.0.0/8", "1000-2000", "10.0.0.1 . 53".
func nftValue(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var num json.Number
	if json.Unmarshal(raw, &num) == nil {
		return num.String()
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = nftValue(x)
		}
		return strings.Join(parts, ", ")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return string(raw)
	}
	for k, v := range obj {
		switch k {
		case "payload":
			var p struct{ Protocol, Field string }
			json.Unmarshal(v, &p)
			return p.Protocol + " " + p.Field
		case "meta":
			var m struct{ Key string }
			json.Unmarshal(v, &m)
			return "meta " + m.Key
		case "prefix":
			var p struct {
				Addr string `json:"addr"`
				Len  int    `json:"len"`
			}
			json.Unmarshal(v, &p)
			return p.Addr + "/" + strconv.Itoa(p.Len)
		case "range":
			var r []json.RawMessage
			json.Unmarshal(v, &r)
			if len(r) == 2 {
				return nftValue(r[0]) + "-" + nftValue(r[1])
			}
		case "concat":
			var c []json.RawMessage
			json.Unmarshal(v, &c)
			parts := make([]string, len(c))
			for i, x := range c {
				parts[i] = nftValue(x)
			}
			return strings.Join(parts, " . ")
		case "set":
			var elems []json.RawMessage
			json.Unmarshal(v, &elems)
			parts := make([]string, len(elems))
			for i, el := range elems {
				var pair []json.RawMessage
				if json.Unmarshal(el, &pair) == nil && len(pair) == 2 {
					parts[i] = nftValue(pair[0]) + " : " + nftValue(pair[1])
				} else {
					parts[i] = nftValue(el)
				}
			}
			return "{ " + strings.Join(parts, ", ") + " }"
		case "numgen":
			var n struct {
				Mode string `json:"mode"`
				Mod  int    `json:"mod"`
			}
			json.Unmarshal(v, &n)
			return "numgen " + n.Mode + " mod " + strconv.Itoa(n.Mod)
		case "map":
			var m struct {
				Key  json.RawMessage `json:"key"`
				Data json.RawMessage `json:"data"`
			}
			json.Unmarshal(v, &m)
			return nftValue(m.Key) + " map " + nftValue(m.Data)
		case "&", "|", "^":
			var args []json.RawMessage
			json.Unmarshal(v, &args)
			if len(args) == 2 {
				return nftValue(args[0]) + " " + k + " " + nftValue(args[1])
			}
		case "jump", "goto":
			var j struct{ Target string }
			json.Unmarshal(v, &j)
			return k + " " + j.Target
		}
		return k
	}
	return ""
}
