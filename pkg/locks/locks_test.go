package locks

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
)

// The test binary doubles as a second process: LOCKS_HELPER=hold takes the
// lock and keeps it until stdin closes; LOCKS_HELPER=check prints busy/free.
func TestMain(m *testing.M) {
	dir, host, script := os.Getenv("LOCKS_DIR"), os.Getenv("LOCKS_HOST"), os.Getenv("LOCKS_SCRIPT")
	switch os.Getenv("LOCKS_HELPER") {
	case "hold":
		held, conflicts, err := Acquire(dir, []string{host}, script, zerolog.Nop())
		if err != nil || len(conflicts) > 0 {
			fmt.Println("busy", conflicts, err)
			os.Exit(1)
		}
		fmt.Println("held")
		io.Copy(io.Discard, os.Stdin)
		held.Release()
		os.Exit(0)
	case "check":
		conflicts, err := CheckAvailable(dir, []string{host}, script)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		if len(conflicts) > 0 {
			fmt.Println("busy")
		} else {
			fmt.Println("free")
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type logBuf struct{ bytes.Buffer }

// lines renders each event as "level message K=v ..." with keys sorted.
func (l *logBuf) lines(t *testing.T) []string {
	t.Helper()
	var out []string
	dec := json.NewDecoder(&l.Buffer)
	for dec.More() {
		var ev map[string]any
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("%v %v", ev["level"], ev["message"])
		var keys []string
		for k := range ev {
			if k != "level" && k != "message" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			s += fmt.Sprintf(" %s=%v", k, ev[k])
		}
		out = append(out, s)
	}
	l.Reset()
	return out
}

func TestFileName(t *testing.T) {
	tests := []struct{ host, script, want string }{
		{"web-01", "backup", "web-01--backup.lock"},
		{"web-01:7443", "backup", "web-01_7443--backup.lock"},
		{"a b/c", "x;y", "a_b_c--x_y.lock"},
		{"héllo", "s", "h__llo--s.lock"}, // per byte, as Perl on byte strings
		{"Under_score.dot-dash", "S_1.sh", "Under_score.dot-dash--S_1.sh.lock"},
		{"../../etc", "passwd", ".._.._etc--passwd.lock"},
	}
	for _, tt := range tests {
		if got := FileName(tt.host, tt.script); got != tt.want {
			t.Errorf("FileName(%q, %q) = %q, want %q", tt.host, tt.script, got, tt.want)
		}
	}
}

// A 253-character DNS name with a port would make a 266-byte name: it is cut
// to fit, distinct per pair, and held, checked and listed like any other.
func TestLongNamesFit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	long := strings.Repeat("h", 245) + ".example" // 253 characters
	hosts := []string{long + ":7443", long + ":7444", long}
	names := map[string]bool{}
	for _, h := range hosts {
		for _, s := range []string{"deploy", strings.Repeat("s", 300)} {
			n := FileName(h, s)
			if len(n) > 255 || names[n] {
				t.Errorf("FileName(%d chars, %d chars) = %d bytes, duplicate %v", len(h), len(s), len(n), names[n])
			}
			names[n] = true
		}
	}
	held, conflicts, err := CheckAndAcquire(dir, hosts, "deploy", zerolog.Nop())
	if err != nil || conflicts != nil {
		t.Fatalf("CheckAndAcquire = %v, %v", conflicts, err)
	}
	if c := mustCheck(t, dir, hosts[:1], "deploy"); len(c) != 1 {
		t.Errorf("a held long-named lock is not seen: %v", c)
	}
	list, err := ListHeld(dir)
	if err != nil || len(list) != 3 {
		t.Fatalf("ListHeld = %v, %v", list, err)
	}
	for _, l := range list {
		if l.Script != "deploy" || !strings.HasPrefix(l.Host, strings.Repeat("h", 120)+"~") {
			t.Errorf("listed as %q %q", l.Host, l.Script)
		}
	}
	held.Release()
}

func mustCheck(t *testing.T, dir string, hosts []string, script string) []string {
	t.Helper()
	c, err := CheckAvailable(dir, hosts, script)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAcquireCheckListRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	var lb logBuf
	log := zerolog.New(&lb)

	held, conflicts, err := Acquire(dir, []string{"web-01", "web-02:7443"}, "deploy", log)
	if err != nil || conflicts != nil || held == nil {
		t.Fatalf("Acquire = %v, %v, %v", held, conflicts, err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("lock dir: %v %v", fi.Mode(), err)
	}
	if diff := cmp.Diff([]string{"info lock-acquire HOST=web-01 SCRIPT=deploy", "info lock-acquire HOST=web-02:7443 SCRIPT=deploy"}, lb.lines(t)); diff != "" {
		t.Errorf("acquire logs (-want +got):\n%s", diff)
	}

	// The same process conflicts with itself: flock is per open file.
	if diff := cmp.Diff([]string{"web-01:deploy", "web-02:7443:deploy"}, mustCheck(t, dir, []string{"web-01", "web-02:7443", "web-03"}, "deploy")); diff != "" {
		t.Errorf("CheckAvailable (-want +got):\n%s", diff)
	}
	if c := mustCheck(t, dir, []string{"web-01"}, "other"); c != nil {
		t.Errorf("another script conflicts: %v", c)
	}

	second, conflicts, err := Acquire(dir, []string{"web-03", "web-01"}, "deploy", log)
	if err != nil || second != nil {
		t.Fatalf("second Acquire = %v, %v", second, err)
	}
	if diff := cmp.Diff([]string{"web-01:deploy"}, conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"warn lock-conflict CONFLICTS=web-01:deploy"}, lb.lines(t)); diff != "" {
		t.Errorf("conflict logs (-want +got):\n%s", diff)
	}
	if c := mustCheck(t, dir, []string{"web-03"}, "deploy"); c != nil {
		t.Errorf("web-03 kept after a failed Acquire: %v", c)
	}

	list, err := ListHeld(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Lock{{"web-01", "deploy"}, {"web-02_7443", "deploy"}}, list); diff != "" {
		t.Errorf("ListHeld (-want +got):\n%s", diff)
	}

	held.Release()
	held.Release()
	if diff := cmp.Diff([]string{"info lock-release HOSTS=web-01,web-02:7443 SCRIPT=deploy"}, lb.lines(t)); diff != "" {
		t.Errorf("release logs (-want +got):\n%s", diff)
	}
	if c := mustCheck(t, dir, []string{"web-01", "web-02:7443"}, "deploy"); c != nil {
		t.Errorf("still held after Release: %v", c)
	}
	if list, _ := ListHeld(dir); list != nil {
		t.Errorf("ListHeld after Release = %v", list)
	}
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"web-01--deploy.lock", "web-01--other.lock", "web-02_7443--deploy.lock", "web-03--deploy.lock"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("lock files are never deleted (-want +got):\n%s", diff)
	}
}

func TestAcquireSameFileTwice(t *testing.T) {
	dir := t.TempDir()
	held, conflicts, err := Acquire(dir, []string{"web-01:7443", "web-01", "web-01_7443"}, "s", zerolog.Nop())
	if err != nil || conflicts != nil {
		t.Fatalf("Acquire = %v, %v", conflicts, err)
	}
	defer held.Release()
	if diff := cmp.Diff([]string{"web-01:s", "web-01_7443:s"}, mustCheck(t, dir, []string{"web-01", "web-01_7443"}, "s")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNoHosts(t *testing.T) {
	var lb logBuf
	held, conflicts, err := Acquire(t.TempDir(), nil, "s", zerolog.New(&lb))
	if err != nil || conflicts != nil || held == nil {
		t.Fatalf("Acquire = %v, %v, %v", held, conflicts, err)
	}
	held.Release()
	var nilHeld *Held
	nilHeld.Release()
	if got := lb.lines(t); got != nil {
		t.Errorf("logs: %v", got)
	}
}

func TestErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := CheckAvailable(t.TempDir(), []string{"h"}, ""); err == nil {
		t.Error("empty script accepted")
	}
	if _, _, err := Acquire(filepath.Join(file, "locks"), []string{"h"}, "s", zerolog.Nop()); err == nil {
		t.Error("lock dir under a file accepted")
	}
	if _, err := ListHeld(file); err == nil {
		t.Error("ListHeld on a file succeeded")
	}
	if l, err := ListHeld(filepath.Join(t.TempDir(), "missing")); l != nil || err != nil {
		t.Errorf("ListHeld on a missing dir = %v, %v", l, err)
	}
}

func TestReadOnlyLockFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can open any file for writing")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName("h", "s")), nil, 0o444)
	held, conflicts, err := Acquire(dir, []string{"h"}, "s", zerolog.Nop())
	if err != nil || conflicts != nil {
		t.Fatalf("Acquire = %v, %v", conflicts, err)
	}
	defer held.Release()
	if c := mustCheck(t, dir, []string{"h"}, "s"); c == nil {
		t.Error("read-only lock file not locked")
	}
}

func TestListHeld(t *testing.T) {
	dir := t.TempDir()
	hold := func(name string) {
		f, err := openLockFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if ok, err := tryLock(f); !ok || err != nil {
			t.Fatalf("lock %s: %v %v", name, ok, err)
		}
	}
	for _, name := range []string{"zz--s.lock", "a--b--c.lock", "a---b.lock", "web-01--x.lock", "noseparator.lock", "x--.lock", "k--v.lockx"} {
		hold(name)
	}
	os.WriteFile(filepath.Join(dir, "free--s.lock"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "d--s.lock"), 0o755)

	got, err := ListHeld(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Lock{{"a--b", "c"}, {"a-", "b"}, {"web-01", "x"}, {"zz", "s"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// holder is a process other than this one that can hold a lock file.
type holder struct {
	name  string
	hold  func(dir, host, script, path string) *exec.Cmd // prints "held", keeps it until stdin closes
	probe func(dir, host, script, path string) *exec.Cmd // prints "busy" or "free"
}

func helperCmd(mode, dir, host, script string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCKS_HELPER="+mode, "LOCKS_DIR="+dir, "LOCKS_HOST="+host, "LOCKS_SCRIPT="+script)
	return cmd
}

func holders(t *testing.T) []holder {
	hs := []holder{{
		name:  "go process",
		hold:  func(dir, host, script, _ string) *exec.Cmd { return helperCmd("hold", dir, host, script) },
		probe: func(dir, host, script, _ string) *exec.Cmd { return helperCmd("check", dir, host, script) },
	}}
	if _, err := exec.LookPath("flock"); err == nil {
		hs = append(hs, holder{
			name: "flock(1)",
			hold: func(_, _, _, path string) *exec.Cmd {
				return exec.Command("flock", "-n", path, "sh", "-c", "echo held; cat >/dev/null")
			},
			probe: func(_, _, _, path string) *exec.Cmd {
				return exec.Command("sh", "-c", `flock -n -E 99 "$1" echo free || echo busy`, "sh", path)
			},
		})
	} else {
		t.Log("flock(1) not installed; skipping it")
	}
	if _, err := exec.LookPath("perl"); err == nil {
		// The primitive Exec::Lock uses: open '>>' and flock LOCK_EX|LOCK_NB.
		const open = `use Fcntl qw(:flock); $| = 1; open my $fh, '>>', $ARGV[0] or die "open: $!";`
		hs = append(hs, holder{
			name: "perl",
			hold: func(_, _, _, path string) *exec.Cmd {
				return exec.Command("perl", "-e", open+`flock($fh, LOCK_EX|LOCK_NB) or die "busy"; print "held\n"; 1 while <STDIN>;`, path)
			},
			probe: func(_, _, _, path string) *exec.Cmd {
				return exec.Command("perl", "-e", open+`print flock($fh, LOCK_EX|LOCK_NB) ? "free\n" : "busy\n";`, path)
			},
		})
	} else {
		t.Log("perl not installed; skipping it")
	}
	return hs
}

func TestOtherProcesses(t *testing.T) {
	for _, h := range holders(t) {
		t.Run(h.name, func(t *testing.T) {
			dir, host, script := t.TempDir(), "web-01:7443", "deploy"
			path := filepath.Join(dir, FileName(host, script))

			// Another process holds it: every Go view sees that.
			cmd := h.hold(dir, host, script, path)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if strings.TrimSpace(line) != "held" {
				stdin.Close()
				cmd.Wait()
				t.Fatalf("holder said %q, %v", line, err)
			}
			if diff := cmp.Diff([]string{"web-01:7443:deploy"}, mustCheck(t, dir, []string{host}, script)); diff != "" {
				t.Errorf("CheckAvailable (-want +got):\n%s", diff)
			}
			if _, conflicts, err := Acquire(dir, []string{host}, script, zerolog.Nop()); err != nil || len(conflicts) != 1 {
				t.Errorf("Acquire while held elsewhere = %v, %v", conflicts, err)
			}
			if list, _ := ListHeld(dir); !cmp.Equal([]Lock{{"web-01_7443", "deploy"}}, list) {
				t.Errorf("ListHeld = %v", list)
			}
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			if c := mustCheck(t, dir, []string{host}, script); c != nil {
				t.Errorf("still held after the holder exited: %v", c)
			}

			// Go holds it: the other side sees that.
			probe := func() string {
				cmd := h.probe(dir, host, script, path)
				cmd.Stderr = os.Stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("probe: %v", err)
				}
				return strings.TrimSpace(string(out))
			}
			held, _, err := Acquire(dir, []string{host}, script, zerolog.Nop())
			if err != nil || held == nil {
				t.Fatalf("Acquire: %v", err)
			}
			got := []string{probe()}
			held.Release()
			got = append(got, probe())
			if diff := cmp.Diff([]string{"busy", "free"}, got); diff != "" {
				t.Errorf("probe while held, after release (-want +got):\n%s", diff)
			}
		})
	}
}

// A flock is not inherited past close: a holder that dies frees the lock
// even without releasing it.
func TestHolderKilled(t *testing.T) {
	dir := t.TempDir()
	cmd := helperCmd("hold", dir, "h", "s")
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "held\n" {
		t.Fatalf("holder said %q", line)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for mustCheck(t, dir, []string{"h"}, "s") != nil {
		if time.Now().After(deadline) {
			t.Fatal("lock still held after its holder was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCheckAndAcquire(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	held, conflicts, err := CheckAndAcquire(dir, []string{"web-01", "web-02"}, "deploy", zerolog.Nop())
	if err != nil || conflicts != nil || held == nil {
		t.Fatalf("first CheckAndAcquire = %v, %v, %v", held, conflicts, err)
	}
	again, conflicts, err := CheckAndAcquire(dir, []string{"web-02", "web-03"}, "deploy", zerolog.Nop())
	if err != nil || again != nil {
		t.Fatalf("second CheckAndAcquire = %v, %v", again, err)
	}
	if diff := cmp.Diff([]string{"web-02:deploy"}, conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	held.Release()
	third, conflicts, err := CheckAndAcquire(dir, []string{"web-02", "web-03"}, "deploy", zerolog.Nop())
	if err != nil || conflicts != nil || third == nil {
		t.Fatalf("after release = %v, %v, %v", third, conflicts, err)
	}
	third.Release()
}
