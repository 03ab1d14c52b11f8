//go:build !noetcd

package buildinfo

// flavour names a build that leaves something out; the standard build has
// everything.
const flavour = ""
