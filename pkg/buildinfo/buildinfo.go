// Package buildinfo carries the version stamped at build time
// (make sets it with -ldflags "-X …/pkg/buildinfo.Version=…").
package buildinfo

// Version is the single version string every role reports.
var Version = "0.9.0-dev"
