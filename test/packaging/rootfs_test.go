package packaging

// Fresh Debian roots for installing into: one minbase root per suite made by
// debootstrap and kept in the cache, and for each test a writable overlay of
// it, so a test starts from a clean system in milliseconds and what it
// changed is exactly the overlay's upper directory.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var debian struct {
	once sync.Once
	dir  string
	made time.Duration // zero when the cached root was used
	err  error
}

// debianRoot is a minbase root of this machine's Debian suite, from the
// mirror apt uses here, made once and kept under the cache directory.
func debianRoot(t *testing.T) string {
	t.Helper()
	need(t, "debootstrap", "chroot", "mount")
	cache := cacheDir(t)
	debian.once.Do(func() {
		debian.dir, debian.made, debian.err = makeDebianRoot(cache)
	})
	if debian.err != nil {
		t.Fatal(debian.err)
	}
	if debian.made > 0 {
		t.Logf("debootstrap made %s in %s", debian.dir, debian.made.Round(time.Second))
	}
	return debian.dir
}

func makeDebianRoot(cache string) (string, time.Duration, error) {
	suite, mirror, err := aptSuiteMirror()
	if err != nil {
		return "", 0, err
	}
	dir := filepath.Join(cache, "debian-"+suite+"-minbase")
	stamp := filepath.Join(dir, ".ctrl-exec-test-complete")
	if _, err := os.Stat(stamp); err == nil {
		return dir, 0, nil
	}
	// A half-made root (an interrupted run) is made again from scratch.
	tmp := dir + ".tmp"
	for _, d := range []string{tmp, dir} {
		if err := os.RemoveAll(d); err != nil {
			return "", 0, err
		}
	}
	start := time.Now()
	if out, err := exec.Command("debootstrap", "--variant=minbase", suite, tmp, mirror).CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("debootstrap --variant=minbase %s %s %s: %v\n%s", suite, tmp, mirror, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, filepath.Base(stamp)), []byte(suite+" "+mirror+"\n"), 0o644); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", 0, err
	}
	return dir, time.Since(start), nil
}

// aptSuiteMirror reads this machine's release codename from /etc/os-release
// and the mirror that serves it from apt's sources (deb822 or one-line).
func aptSuiteMirror() (suite, mirror string, err error) {
	osr, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", "", err
	}
	for _, l := range strings.Split(string(osr), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok {
			suite = strings.Trim(v, `"`)
		}
	}
	if suite == "" {
		return "", "", fmt.Errorf("/etc/os-release: no VERSION_CODENAME")
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, stanza := range strings.Split(string(data), "\n\n") {
			fields := map[string][]string{}
			for _, l := range strings.Split(stanza, "\n") {
				if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
					fields[strings.TrimSpace(k)] = strings.Fields(v)
				}
			}
			for _, s := range fields["Suites"] {
				if s == suite && len(fields["URIs"]) > 0 {
					return suite, fields["URIs"][0], nil
				}
			}
		}
	}
	if data, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			// deb [options] URI SUITE COMPONENT...
			if len(f) >= 3 && f[0] == "deb" {
				f = f[1:]
				if strings.HasPrefix(f[0], "[") {
					for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
						f = f[1:]
					}
					f = f[1:]
				}
				if len(f) >= 2 && f[1] == suite {
					return suite, f[0], nil
				}
			}
		}
	}
	return "", "", fmt.Errorf("no apt source for %s in /etc/apt/sources.list{,.d/*.sources}", suite)
}

// rootfs is a writable overlay of the cached Debian root: dir is the merged
// view, upper holds what was changed.
type rootfs struct {
	t          *testing.T
	lower, dir string
	upper      string
}

func freshRoot(t *testing.T) *rootfs {
	t.Helper()
	lower := debianRoot(t)
	base := t.TempDir()
	r := &rootfs{t: t, lower: lower, dir: filepath.Join(base, "root"), upper: filepath.Join(base, "upper")}
	work := filepath.Join(base, "work")
	for _, d := range []string{r.dir, r.upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + r.upper + ",workdir=" + work
	if err := syscall.Mount("overlay", r.dir, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(r.dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", r.dir, err)
		}
	})
	return r
}

// path is where an absolute path of the root lives on this machine.
func (r *rootfs) path(p string) string { return filepath.Join(r.dir, p) }

// chroot runs a command inside the root and returns its combined output.
func (r *rootfs) chroot(args ...string) (string, error) {
	cmd := exec.Command("chroot", append([]string{r.dir}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C", "HOME=/root", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (r *rootfs) mustChroot(args ...string) string {
	r.t.Helper()
	out, err := r.chroot(args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// copyIn copies a file of this machine into the root (mode kept).
func (r *rootfs) copyIn(src, dst string) {
	r.t.Helper()
	run(r.t, "", "cp", "-p", src, r.path(dst))
}

// ids maps the root's uids and gids to names, from its account files.
func (r *rootfs) ids() (users, groups map[int]string) {
	read := func(file string) map[int]string {
		m := map[int]string{}
		f, err := os.Open(r.path(file))
		if err != nil {
			r.t.Fatal(err)
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Split(s.Text(), ":")
			if len(fields) >= 3 {
				if id, err := strconv.Atoi(fields[2]); err == nil {
					m[id] = fields[0]
				}
			}
		}
		return m
	}
	return read("/etc/passwd"), read("/etc/group")
}

// account is one line of the root's /etc/passwd (or /etc/group), by name.
func (r *rootfs) account(file, name string) []string {
	data, err := os.ReadFile(r.path(file))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Split(l, ":"); f[0] == name {
			return f
		}
	}
	return nil
}

// describe is one path as the tests compare it: type, mode, owner and
// content hash (files) or target (links).
func describe(path string, users, groups map[int]string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	st := fi.Sys().(*syscall.Stat_t)
	owner := name(users, int(st.Uid)) + ":" + name(groups, int(st.Gid))
	mode := fmt.Sprintf("%04o", uint32(fi.Mode().Perm())|uint32(st.Mode&0o7000))
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		return "link " + target, err
	case fi.IsDir():
		return "dir " + mode + " " + owner, nil
	case fi.Mode().IsRegular():
		sum, err := fileSHA(path)
		return "file " + mode + " " + owner + " " + sum, err
	case fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0:
		return "deleted", nil // an overlay whiteout
	}
	return "other " + fi.Mode().String(), nil
}

func name(m map[int]string, id int) string {
	if n, ok := m[id]; ok {
		return n
	}
	return strconv.Itoa(id)
}

func fileSHA(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// bookkeeping are the paths a package manager or account tool rewrites as a
// matter of course; tests check accounts and package state by other means.
var bookkeeping = []string{"var/lib/dpkg/", "var/log/", "var/cache/", "tmp/", "root/", "run/",
	"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/subuid", "etc/subgid", "etc/.pwd.lock", "etc/ld.so.cache"}

func isBookkeeping(rel string) bool {
	for _, b := range bookkeeping {
		if dir, ok := strings.CutSuffix(b, "/"); ok {
			if rel == dir || strings.HasPrefix(rel, b) {
				return true
			}
		} else if rel == b || rel == b+"-" {
			return true
		}
	}
	return false
}

// changes is what differs between the root and the cached one it started
// from, path (relative, no leading slash) to describe(): every path in the
// overlay's upper dir whose description differs from the lower root's, less
// the bookkeeping paths.
func (r *rootfs) changes() map[string]string {
	r.t.Helper()
	users, groups := r.ids()
	lowerUsers, lowerGroups := idsOf(r.t, r.lower)
	got := map[string]string{}
	err := filepath.WalkDir(r.upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.upper, p)
		if rel == "." {
			return nil
		}
		if isBookkeeping(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		now, err := describe(filepath.Join(r.dir, rel), users, groups)
		if os.IsNotExist(err) {
			now, err = "deleted", nil
		}
		if err != nil {
			return err
		}
		before, err := describe(filepath.Join(r.lower, rel), lowerUsers, lowerGroups)
		if os.IsNotExist(err) {
			before = "absent"
		} else if err != nil {
			return err
		}
		if now != before && !(now == "deleted" && before == "absent") {
			got[rel] = now
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return got
}

func idsOf(t *testing.T, dir string) (users, groups map[int]string) {
	r := &rootfs{t: t, dir: dir}
	return r.ids()
}
