package rotation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// Identity is the ctrl-exec certificate and key, and the previous pair
// kept for the overlap (D-25), as a shared store hands them to every node
// after a rotation. It holds a private key: never log or print it.
type Identity struct {
	Cert, Key         []byte
	PrevCert, PrevKey []byte // nil: no previous pair
}

// String keeps the key out of any log line that formats an Identity.
func (id *Identity) String() string { return "ctrl-exec identity (key withheld)" }

// GoString keeps the key out of %#v too.
func (id *Identity) GoString() string { return id.String() }

type identityJSON struct {
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	PrevCert string `json:"prev_cert,omitempty"`
	PrevKey  string `json:"prev_key,omitempty"`
}

// Marshal is the identity as a shared store keeps it: PEM text in JSON.
func (id *Identity) Marshal() []byte {
	data, _ := json.Marshal(identityJSON{string(id.Cert), string(id.Key), string(id.PrevCert), string(id.PrevKey)})
	return data
}

// ParseIdentity decodes Marshal's form; a pair must be whole.
func ParseIdentity(data []byte) (*Identity, error) {
	var j identityJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("ctrl-exec identity is not JSON: %w", err)
	}
	if j.Cert == "" || j.Key == "" {
		return nil, errors.New("ctrl-exec identity lacks its cert or key")
	}
	if (j.PrevCert == "") != (j.PrevKey == "") {
		return nil, errors.New("ctrl-exec identity has half of the previous pair")
	}
	id := &Identity{Cert: []byte(j.Cert), Key: []byte(j.Key)}
	if j.PrevCert != "" {
		id.PrevCert, id.PrevKey = []byte(j.PrevCert), []byte(j.PrevKey)
	}
	return id, nil
}

// Serial is the certificate's serial in canonical hex ("" if unreadable).
func (id *Identity) Serial() string {
	c, err := pki.ParseCertPEM(id.Cert)
	if err != nil {
		return ""
	}
	return pki.SerialHex(c)
}

// identityFile is one file of the identity in caDir: its place, its
// content in id, and how it is written (key: 0640, the directory's group;
// cert: 0644), as setup-ctrl-exec and rotation write them.
type identityFile struct {
	path string
	data []byte
	key  bool
}

func identityFiles(caDir string, id *Identity) []identityFile {
	cert, key := filepath.Join(caDir, "ctrl-exec.crt"), filepath.Join(caDir, "ctrl-exec.key")
	// The key before its certificate, as IssueCtrlExecCert writes them.
	return []identityFile{
		{key, id.Key, true}, {cert, id.Cert, false},
		{key + prevSuffix, id.PrevKey, true}, {cert + prevSuffix, id.PrevCert, false},
	}
}

// ReadIdentity is caDir's ctrl-exec pair and, when both files are there,
// its .prev pair: what a rotation publishes.
func ReadIdentity(caDir string) (*Identity, error) {
	files := identityFiles(caDir, &Identity{})
	var data [4][]byte
	for i, f := range files {
		b, err := os.ReadFile(f.path)
		if err != nil && (i < 2 || !errors.Is(err, fs.ErrNotExist)) {
			return nil, err
		}
		data[i] = b
	}
	id := &Identity{Key: data[0], Cert: data[1]}
	if data[2] != nil && data[3] != nil {
		id.PrevKey, id.PrevCert = data[2], data[3]
	}
	return id, nil
}

// renameFile is os.Rename; tests make it fail.
var renameFile = os.Rename

// WriteIdentity makes caDir's four files hold id: every file that differs
// is first written whole beside its place (a temp name), and only then are
// they all moved in; a .prev file id has none of is removed. If a step
// fails, the files already replaced get their old content back, so the
// key and certificate are never left from different pairs. changed
// reports whether anything was written or removed.
func WriteIdentity(caDir string, id *Identity) (changed bool, err error) {
	type step struct {
		f       identityFile
		old     []byte // nil: absent
		tmp     string // "": remove f.path
		applied bool
	}
	write := func(f identityFile, path string, data []byte) error {
		if f.key {
			return pki.WriteCtrlExecKey(path, data)
		}
		if err := atomicfile.Write(path, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	var steps []*step
	defer func() {
		for _, st := range steps {
			if st.tmp != "" && !st.applied {
				os.Remove(st.tmp)
			}
		}
	}()
	for _, f := range identityFiles(caDir, id) {
		old, err := os.ReadFile(f.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		exists := err == nil
		switch {
		case f.data == nil && !exists, exists && bytes.Equal(old, f.data):
			continue
		case f.data == nil:
			steps = append(steps, &step{f: f, old: old})
			continue
		}
		st := &step{f: f, old: old, tmp: f.path + ".sync-tmp"}
		if !exists {
			st.old = nil
		}
		steps = append(steps, st)
		if err := write(f, st.tmp, f.data); err != nil {
			return false, err
		}
	}
	for _, st := range steps {
		if st.tmp == "" {
			err = os.Remove(st.f.path)
			if errors.Is(err, fs.ErrNotExist) {
				err = nil
			}
		} else if err = renameFile(st.tmp, st.f.path); err != nil {
			err = fmt.Errorf("replace %s: %w", st.f.path, err)
		}
		if err != nil {
			// Put back what was already replaced.
			for _, done := range steps {
				if !done.applied {
					continue
				}
				if done.old == nil {
					os.Remove(done.f.path)
				} else if rerr := write(done.f, done.f.path, done.old); rerr != nil {
					err = fmt.Errorf("%w; putting %s back also failed: %v", err, done.f.path, rerr)
				}
			}
			return false, err
		}
		st.applied = true
	}
	return len(steps) > 0, nil
}
