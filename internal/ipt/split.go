// Package ipt splits iptables rule lines into arguments, for the lab that
// writes rules and for doctor, which reads iptables-save output.
package ipt

import (
	"fmt"
	"strings"
)

// Split splits a rule line into arguments as iptables-save quotes them:
// double quotes group words (comments), a backslash escapes the next
// character.
func Split(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			have = true
		case c == '"':
			inQuote = !inQuote
			have = true
		case (c == ' ' || c == '\t') && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unbalanced quote in rule %q", line)
	}
	if have {
		args = append(args, cur.String())
	}
	return args, nil
}
