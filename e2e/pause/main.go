// Command pause is the pod sandbox process of the VM lab's pod test
// (e2e/pods_test.go): it holds the pod's namespaces and waits for
// SIGTERM or SIGINT, like the kubelet's pause image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
