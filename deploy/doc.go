// Package deploy holds the tests of ctprobe's Kubernetes manifests
// (deploy/kubernetes), the one-node recipe (ctprobe-on-node.sh), the
// Prometheus rules and the Grafana dashboard. It is a module of its own, so
// that the ctprobe binary does not depend on the Kubernetes API types.
package deploy
