package render

import (
	"bytes"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/names"
)

func TestAppendNames(t *testing.T) {
	id := checkoutCtr
	for _, c := range []struct {
		n    names.Names
		want string
	}{
		{names.Names{}, ""},
		{names.Names{Pod: checkoutPod, Container: "app", ContainerID: id}, "default/checkout-7f9c6d5b8-x2k4q/app"},
		{names.Names{Pod: checkoutPod}, "default/checkout-7f9c6d5b8-x2k4q"},
		// A container the runtime did not list yet.
		{names.Names{Pod: checkoutPod, ContainerID: id}, "default/checkout-7f9c6d5b8-x2k4q container 0123456789ab"},
		{names.Names{Pod: names.Pod{UID: checkoutPod.UID}, ContainerID: id}, "pod uid " + checkoutPod.UID + " container 0123456789ab"},
		{names.Names{ContainerID: id}, "container 0123456789ab"},
		{names.Names{Netns: "lab"}, ""},
	} {
		if got := string(appendNames(nil, &c.n)); got != c.want {
			t.Errorf("%+v: %q, want %q", c.n, got, c.want)
		}
	}
}

// The pcapng export comments each packet of an incident with its pod.
func TestPCAPNGNamesPods(t *testing.T) {
	var buf bytes.Buffer
	p := NewPCAPNG(&buf, Options{})
	var named *incident.Incident
	for _, inc := range testIncidents() {
		if inc.Loser.Names.Container != "" {
			named = &inc
			break
		}
	}
	if named == nil {
		t.Fatal("no named fixture")
	}
	if err := p.Incident(named); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("winner, ct 0xffff888004a1b300, default/checkout-7f9c6d5b8-x2k4q/app")); n != 2 {
		t.Errorf("%d winner packets commented with the pod, want 2 (before and after NAT)", n)
	}
}
