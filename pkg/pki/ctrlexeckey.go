package pki

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
)

// CtrlExecKeyMode is the mode of ctrl-exec.key and ctrl-exec.key.prev (D-30):
// readable by the group of /etc/ctrl-exec (ctrl-exec as installed), whose
// members run the CLI without sudo. ca.key stays 0600 root.
const CtrlExecKeyMode os.FileMode = 0o640

// WriteCtrlExecKey replaces a ctrl-exec key file whole, mode CtrlExecKeyMode,
// group that of its directory (root:ctrl-exec as installed). The directory's
// group, not a group looked up by name, so a relocated or container tree
// keeps whatever group its operator gave the directory.
func WriteCtrlExecKey(path string, keyPEM []byte) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("write %s: cannot read the group of %s", path, dir)
	}
	return atomicfile.WriteGroup(path, keyPEM, CtrlExecKeyMode, int(st.Gid))
}
