package names

import (
	"testing"
)

const (
	uid  = "8f3c1e2a-7b4d-4e5f-9a0b-1c2d3e4f5a6b"
	uidU = "8f3c1e2a_7b4d_4e5f_9a0b_1c2d3e4f5a6b" // systemd's escaping
	cid  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	// A static pod's UID is a hash of its manifest.
	staticUID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
)

func TestParseCgroupPath(t *testing.T) {
	cases := []struct {
		name, path string
		want       Cgroup
	}{
		{"cgroupfs containerd besteffort", "/kubepods/besteffort/pod" + uid + "/" + cid, Cgroup{uid, cid}},
		{"cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid, Cgroup{uid, cid}},
		{"cgroupfs crio", "/kubepods/burstable/pod" + uid + "/crio-" + cid, Cgroup{uid, cid}},
		{"cgroupfs docker (cri-dockerd)", "/kubepods/burstable/pod" + uid + "/" + cid, Cgroup{uid, cid}},
		{"systemd containerd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", Cgroup{uid, cid}},
		{"systemd guaranteed", "/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", Cgroup{uid, cid}},
		{"systemd crio", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope", Cgroup{uid, cid}},
		{"systemd crio conmon is not the container", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope", Cgroup{uid, ""}},
		{"systemd docker", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/docker-" + cid + ".scope", Cgroup{uid, cid}},
		{"nested node (kind)", "/system.slice/docker-" + cid + ".scope/kubepods/besteffort/pod" + uid + "/" + cid, Cgroup{uid, cid}},
		{"static pod", "/kubepods/besteffort/pod" + staticUID + "/" + cid, Cgroup{staticUID, cid}},
		{"pod cgroup itself", "/kubepods/besteffort/pod" + uid, Cgroup{uid, ""}},
		{"containerd outside kubernetes", "/k8s.io/" + cid, Cgroup{"", cid}},
		{"docker outside kubernetes", "/system.slice/docker-" + cid + ".scope", Cgroup{"", cid}},
		{"podman", "/machine.slice/libpod-" + cid + ".scope/container", Cgroup{"", cid}},
		{"host process", "/system.slice/ssh.service", Cgroup{}},
		{"root", "/", Cgroup{}},
		{"not a uid", "/kubepods/besteffort/podxyz/" + cid, Cgroup{"", cid}},
		{"short id", "/kubepods/besteffort/pod" + uid + "/0123456789ab", Cgroup{uid, ""}},
		{"upper-case hex is no id", "/k8s.io/" + "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", Cgroup{}},
	}
	for _, c := range cases {
		if got := ParseCgroupPath(c.path); got != c.want {
			t.Errorf("%s: ParseCgroupPath(%q) = %+v, want %+v", c.name, c.path, got, c.want)
		}
	}
}

func TestParseCgroupFile(t *testing.T) {
	v1 := "12:pids:/kubepods/besteffort/pod" + uid + "/" + cid + "\n" +
		"11:cpu,cpuacct:/kubepods/besteffort/pod" + uid + "/" + cid + "\n" +
		"1:name=systemd:/kubepods/besteffort/pod" + uid + "/" + cid + "\n" +
		"0::/\n"
	v1systemd := "10:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n" +
		"0::/system.slice/containerd.service\n"
	cases := []struct {
		name, file string
		want       Cgroup
	}{
		{"v2", "0::/kubepods/besteffort/pod" + uid + "/" + cid + "\n", Cgroup{uid, cid}},
		{"v2 systemd", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n", Cgroup{uid, cid}},
		{"v1 cgroupfs", v1, Cgroup{uid, cid}},
		{"v1 systemd, v2 hierarchy elsewhere", v1systemd, Cgroup{uid, cid}},
		{"a container id alone, then a pod", "3:pids:/k8s.io/" + cid + "\n2:memory:/kubepods/pod" + uid + "/" + cid + "\n", Cgroup{uid, cid}},
		{"host", "0::/init.scope\n", Cgroup{}},
		{"garbage", "no colons here\n:\n\x00\xff:x\n", Cgroup{}},
		{"empty", "", Cgroup{}},
		{"path with a colon", "0::/k8s.io/a:b/" + cid + "\n", Cgroup{"", cid}},
	}
	for _, c := range cases {
		if got := ParseCgroupFile([]byte(c.file)); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func FuzzParseCgroupFile(f *testing.F) {
	f.Add([]byte("0::/kubepods/besteffort/pod" + uid + "/" + cid + "\n"))
	f.Add([]byte("1:name=systemd:/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-" + cid + ".scope\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := ParseCgroupFile(b)
		if c.PodUID != "" && !isUID(c.PodUID) {
			t.Errorf("UID %q is not one", c.PodUID)
		}
		if c.ContainerID != "" && containerID(c.ContainerID) != c.ContainerID {
			t.Errorf("container id %q is not one", c.ContainerID)
		}
	})
}
