package packaging

// The .apk, .ipk and (per arch) .deb archives opened in Go: metadata,
// maintainer scripts, and the data held to the layout install.sh makes.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// member is one entry of an archive, described as describe() does.
type member struct {
	desc string
	body []byte
}

// readTar reads one tar stream; names lose their "./" and trailing "/".
func readTar(r io.Reader, into map[string]member) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if name == "" || name == "." {
			continue
		}
		owner := h.Uname + ":" + h.Gname
		mode := fmt.Sprintf("%04o", h.Mode&0o7777)
		switch h.Typeflag {
		case tar.TypeDir:
			into[name] = member{desc: "dir " + mode + " " + owner}
		case tar.TypeSymlink:
			into[name] = member{desc: "link " + h.Linkname}
		case tar.TypeReg:
			body, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(body)
			into[name] = member{desc: "file " + mode + " " + owner + " " + hex.EncodeToString(sum[:])[:16], body: body}
		default:
			into[name] = member{desc: fmt.Sprintf("type %c", h.Typeflag)}
		}
	}
}

// gzipMembers reads a file of concatenated gzip streams, each a tar (the
// .apk format: control, then data), into one map per stream.
func gzipMembers(t *testing.T, data []byte) []map[string]member {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(data))
	var out []map[string]member
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return out
		}
		zr, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		m := map[string]member{}
		// A segment may end without tar's end blocks: read what is there.
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if err := readTar(bytes.NewReader(raw), m); err != nil && err != io.ErrUnexpectedEOF {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// packageData is the layout a package's data must have: install.sh's with
// every role, the service files of its system, and the binary of build
// (standard or noetcd) for arch.
func packageData(t *testing.T, build, arch, init string) layout {
	ro := roles{control: true, api: true, agent: true, init: init, unitDir: "lib/systemd/system", helperTarget: "/usr/local/bin/ctrl-exec"}
	return expected(t, ro, artefact(t, build+arch), filepath.Join(top, "dist/gen"))
}

// packedBinary is the ctrl-exec a package's data holds.
func packedBinary(t *testing.T, what string, data map[string]member) []byte {
	t.Helper()
	m, ok := data["usr/local/bin/ctrl-exec"]
	if !ok || !strings.HasPrefix(m.desc, "file ") {
		t.Fatalf("%s: no usr/local/bin/ctrl-exec file (%q)", what, m.desc)
	}
	return m.body
}

// checkData compares an archive's data with want: every non-directory entry
// and every directory want names; other directories (parents) 0755 root.
func checkData(t *testing.T, what string, got map[string]member, want layout) {
	t.Helper()
	gotDesc := map[string]string{}
	for p, m := range got {
		if _, named := want[p]; !named && strings.HasPrefix(m.desc, "dir ") {
			if m.desc != "dir 0755 root:root" {
				t.Errorf("%s: parent directory %s is %s, want dir 0755 root:root", what, p, m.desc)
			}
			continue
		}
		gotDesc[p] = m.desc
	}
	if diff := cmp.Diff(map[string]string(want), gotDesc); diff != "" {
		t.Errorf("%s: data (-want +got):\n%s", what, diff)
	}
}

// fields parses "key: value" or "key = value" lines.
func fields(body []byte, sep string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(string(body), "\n") {
		if k, v, ok := strings.Cut(l, sep); ok && !strings.HasPrefix(l, "#") {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

func source(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(top, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Alpine's version grammar (apk-tools version.c): digits and dots, an
// optional letter, suffixes, an optional ~hash, an optional -rN.
var alpineVersion = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*[a-z]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*(~[0-9a-f]+)?(-r[0-9]+)?$`)

var scripts = map[string]string{"pre": "packaging/nfpm/accounts.sh", "postinst": "packaging/nfpm/postinstall.sh",
	"prerm": "packaging/nfpm/preremove.sh", "postrm": "packaging/nfpm/postremove.sh"}

func TestApkContents(t *testing.T) {
	need(t)
	for arch, apkArch := range map[string]string{"amd64": "x86_64", "arm64": "aarch64", "armv7": "armv7"} {
		t.Run(arch, func(t *testing.T) {
			data, err := os.ReadFile(artefact(t, "packages/ctrl-exec_*_"+apkArch+".apk"))
			if err != nil {
				t.Fatal(err)
			}
			segments := gzipMembers(t, data)
			if len(segments) != 2 && len(segments) != 3 { // [signature,] control, data
				t.Fatalf("%d gzip segments, want control and data", len(segments))
			}
			control, files := segments[len(segments)-2], segments[len(segments)-1]
			info := fields(control[".PKGINFO"].body, " = ")
			if info["pkgname"] != "ctrl-exec" || info["arch"] != apkArch || !alpineVersion.MatchString(info["pkgver"]) {
				t.Errorf(".PKGINFO: pkgname %q arch %q pkgver %q; want ctrl-exec, %s, an Alpine version", info["pkgname"], info["arch"], info["pkgver"], apkArch)
			}
			for name, src := range map[string]string{".pre-install": scripts["pre"], ".post-install": scripts["postinst"],
				".pre-deinstall": scripts["prerm"], ".post-deinstall": scripts["postrm"]} {
				if !bytes.Equal(control[name].body, source(t, src)) {
					t.Errorf("%s is not %s", name, src)
				}
			}
			// The standard build: Alpine hosts may be control hosts sharing state in etcd.
			checkBuild(t, "apk "+arch, packedBinary(t, "apk "+arch, files), standard)
			checkData(t, "apk "+arch, files, packageData(t, standard, arch, "openrc"))
		})
	}
	if m, _ := filepath.Glob(filepath.Join(top, "dist/packages/*mips*.apk")); len(m) != 0 {
		t.Errorf("an .apk for mips, which Alpine does not build for: %q", m)
	}
}

func TestIpkContents(t *testing.T) {
	need(t)
	for arch, ipkArch := range map[string]string{"amd64": "x86_64", "arm64": "aarch64_cortex-a53",
		"armv7": "arm_cortex-a7_neon-vfpv4", "mipsle": "mipsel_24kc", "mips": "mips_24kc"} {
		t.Run(arch, func(t *testing.T) {
			data, err := os.ReadFile(artefact(t, "packages/ctrl-exec_*_"+ipkArch+".ipk"))
			if err != nil {
				t.Fatal(err)
			}
			outer := gzipMembers(t, data)
			if len(outer) != 1 {
				t.Fatalf("%d gzip segments, want one tar", len(outer))
			}
			if got := strings.TrimSpace(string(outer[0]["debian-binary"].body)); got != "2.0" {
				t.Errorf("debian-binary %q", got)
			}
			control := gzipMembers(t, outer[0]["control.tar.gz"].body)[0]
			files := gzipMembers(t, outer[0]["data.tar.gz"].body)[0]
			info := fields(control["control"].body, ": ")
			if info["Package"] != "ctrl-exec" || info["Architecture"] != ipkArch {
				t.Errorf("control: Package %q Architecture %q; want ctrl-exec, %s", info["Package"], info["Architecture"], ipkArch)
			}
			for name, src := range map[string]string{"preinst": scripts["pre"], "postinst": scripts["postinst"],
				"prerm": scripts["prerm"], "postrm": scripts["postrm"]} {
				if !bytes.Equal(control[name].body, source(t, src)) {
					t.Errorf("%s is not %s", name, src)
				}
				if control[name].desc[5:9] != "0755" {
					t.Errorf("%s: %s, want mode 0755", name, control[name].desc)
				}
			}
			conf := strings.Fields(string(control["conffiles"].body))
			sort.Strings(conf)
			want := []string{"/etc/ctrl-exec-agent/agent.conf", "/etc/ctrl-exec-agent/scripts.conf", "/etc/ctrl-exec/auth-hook", "/etc/ctrl-exec/ctrl-exec.conf"}
			if diff := cmp.Diff(want, conf); diff != "" {
				t.Errorf("conffiles (-want +got):\n%s", diff)
			}
			// The noetcd build: appliances are agents, short of flash and memory.
			checkBuild(t, "ipk "+arch, packedBinary(t, "ipk "+arch, files), noetcd)
			checkData(t, "ipk "+arch, files, packageData(t, noetcd, arch, "procd"))
		})
	}
}

// Each arch's .deb: Debian's arch name, and the data of the amd64 one.
func TestDebArches(t *testing.T) {
	need(t, "dpkg-deb")
	for arch, debArch := range map[string]string{"amd64": "amd64", "arm64": "arm64", "armv7": "armhf", "mipsle": "mipsel", "mips": "mips"} {
		t.Run(arch, func(t *testing.T) {
			deb := artefact(t, "packages/ctrl-exec_*_"+debArch+".deb")
			if got := strings.TrimSpace(run(t, "", "dpkg-deb", "--field", deb, "Architecture")); got != debArch {
				t.Errorf("Architecture %q, want %s", got, debArch)
			}
			files := map[string]member{}
			if err := readTar(strings.NewReader(run(t, "", "dpkg-deb", "--fsys-tarfile", deb)), files); err != nil {
				t.Fatal(err)
			}
			// The standard build: a .deb installs every role, a control host may need etcd.
			checkBuild(t, "deb "+arch, packedBinary(t, "deb "+arch, files), standard)
			checkData(t, "deb "+arch, files, packageData(t, standard, arch, "systemd"))
		})
	}
}
