package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/event/eventtest"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// needTshark installs Debian's tshark through scripts/deps.sh (as root) or
// skips.
func needTshark(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("tshark"); err == nil {
		return path
	}
	if os.Geteuid() != 0 {
		t.Skip("tshark is not installed, and installing it needs root")
	}
	if out, err := exec.Command("../../scripts/deps.sh", "tshark").CombinedOutput(); err != nil {
		t.Fatalf("install tshark: %v\n%s", err, out)
	}
	path, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// reportPCAPNG runs report -o pcapng on a capture and returns the file it
// wrote, beside the capture (NAME.pcapng).
func reportPCAPNG(t *testing.T, capturePath string) string {
	t.Helper()
	code, pcap, stderr := runCLI("report", "-r", capturePath, "-o", "pcapng")
	if code != 0 {
		t.Fatalf("report -o pcapng: exit %d: %s", code, stderr)
	}
	pcapPath := strings.TrimSuffix(capturePath, ".ctp") + ".pcapng"
	if err := os.WriteFile(pcapPath, []byte(pcap), 0o600); err != nil {
		t.Fatal(err)
	}
	return pcapPath
}

// report -o pcapng writes the packets of a capture for Wireshark: tshark
// reads them, each incident's two packets before and after NAT, with their
// DNS question and a comment naming the race, the outcome and the side.
func TestReportPCAPNGReadByTshark(t *testing.T) {
	tshark := needTshark(t)
	dir := t.TempDir()
	capturePath := filepath.Join(dir, "race3.ctp")
	// Both packets were DNS queries: their ct_in records carry the start
	// of the message, as the probe captures it.
	records := race3(t)
	for i, raw := range records {
		var e probe.BPFEvent
		if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, &e); err != nil {
			t.Fatal(err)
		}
		if event.Kind(e.Kind) != event.CTIn {
			continue
		}
		q, err := dnsmsg.BuildQuery(uint16(0x1000+i), "svc.example", dnsmsg.TypeAAAA)
		if err != nil {
			t.Fatal(err)
		}
		e.PayloadLen = uint16(copy(e.Payload[:], q))
		records[i] = eventtest.Record(e)
	}
	writeCapture(t, capturePath, records, true)
	code, jsonl, stderr := runCLI("report", "-r", capturePath, "-o", "json")
	if code != 0 {
		t.Fatalf("report -o json: exit %d: %s", code, stderr)
	}
	incs := incidents(t, jsonl)
	if len(incs) != 1 {
		t.Fatalf("%d incidents in the report, want 1", len(incs))
	}
	// The report's new entries that did not clash are packets too, before
	// and after NAT, as each incident's two packets are.
	inserted := strings.Count(jsonl, `"result":"inserted"`)
	pcapPath := reportPCAPNG(t, capturePath)
	cmd := exec.Command(tshark, "-r", pcapPath, "-T", "fields", "-E", "separator=|",
		"-e", "frame.interface_name", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-e", "dns.qry.name", "-e", "frame.comment")
	cmd.Env = append(os.Environ(), "HOME="+dir) // tshark writes its profile there
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := 2*inserted + 4*len(incs); len(lines) != want {
		t.Fatalf("tshark read %d packets, want %d (%d new entries, %d incidents, each before and after NAT):\n%s", len(lines), want, inserted, len(incs), out)
	}
	lines = lines[2*inserted:] // the incident's, after the entries written before it
	inc := incs[0]
	race := int(inc["race"].(float64))
	outcome := inc["outcome"].(string)
	for i, line := range lines {
		f := strings.Split(line, "|")
		if len(f) != 6 {
			t.Fatalf("packet %d: %q", i, line)
		}
		iface, src, dst, dport, name, comment := f[0], f[1], f[2], f[3], f[4], f[5]
		side := inc["loser"].(map[string]any)
		if i >= 2 {
			side = inc["winner"].(map[string]any)
		}
		o := side["orig"].(map[string]any)
		r := side["reply"].(map[string]any)
		wantSrc, wantDst := o["src"].(string), o["dst"].(string)
		if iface == "after NAT" {
			wantSrc, wantDst = r["dst"].(string), r["src"].(string)
		}
		if src+":"+dport == "" || !strings.HasPrefix(wantSrc, src+":") || !strings.HasPrefix(wantDst, dst+":") || !strings.HasSuffix(wantDst, ":"+dport) {
			t.Errorf("packet %d on %q: %s -> %s:%s, want %s -> %s", i, iface, src, dst, dport, wantSrc, wantDst)
		}
		if dns, _ := side["dns"].(map[string]any); dns == nil || name != dns["name"] {
			t.Errorf("packet %d: DNS name %q, the report says %v", i, name, side["dns"])
		}
		role := "loser"
		if i >= 2 {
			role = "winner"
		}
		for _, want := range []string{"race " + string(rune('0'+race)), "outcome " + outcome, role} {
			if !strings.Contains(comment, want) {
				t.Errorf("packet %d: comment %q lacks %q", i, comment, want)
			}
		}
	}
}

// A capture with nothing to write as packets (here: no record at all)
// still makes a pcapng file, which Wireshark's tools take for one with no
// packet; an empty file capinfos took for another format.
func TestReportPCAPNGWithoutPackets(t *testing.T) {
	tshark := needTshark(t)
	capinfos := filepath.Join(filepath.Dir(tshark), "capinfos") // wireshark-common, which tshark needs
	dir := t.TempDir()
	capturePath := filepath.Join(dir, "quiet.ctp")
	writeCapture(t, capturePath, nil, true)
	pcapPath := reportPCAPNG(t, capturePath)
	cmd := exec.Command(capinfos, "-M", "-t", "-c", pcapPath)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("capinfos: %v\n%s", err, out)
	}
	for _, want := range []string{"File type:           pcapng", "Number of packets:   0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("capinfos lacks %q:\n%s", want, out)
		}
	}
}
