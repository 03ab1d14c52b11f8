//go:build noetcd

package buildinfo

// flavour names a build that leaves something out: this one has no etcd
// state backend (for agents and appliances).
const flavour = "noetcd"
