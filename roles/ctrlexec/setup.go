package ctrlexec

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
)

// ctrlExecCertDays is the lifetime of the ctrl-exec cert made by
// setup-ctrl-exec (§8.1; rotation has its own rule).
const ctrlExecCertDays = 825

func setupCACommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "setup-ca",
		Usage: "create the certificate authority (once per control host)",
		Description: `Creates /etc/ctrl-exec/ca.key (mode 0600), the self-signed ca.crt
(CN=ctrl-exec CA, 10 years) and ca.serial, and prints the CA fingerprint
(sha256:<hex>) that agents pin with 'request-pairing --ca-fingerprint'. Refuses
to run when ca.key exists: replacing the CA means re-pairing every agent.

--key-type chooses the CA key: rsa-4096 (the default, as upstream) or
ecdsa-p256 (much cheaper handshakes). setup-ctrl-exec and rotate-cert give
the ctrl-exec key the CA's type. Agents choose their own key type when they
pair; the CA signs either kind.

Exit status: 0; 255 if the CA exists or cannot be written, or the key type
is unknown.`,
		Action: func(c *cli.Context) error { return setupCA(e, c.String("key-type")) },
	}
}

func setupCtrlExecCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "setup-ctrl-exec",
		Usage: "create (or replace) the ctrl-exec certificate signed by the CA",
		Description: `Generates /etc/ctrl-exec/ctrl-exec.key (of the CA key's type; mode 0640, group of
/etc/ctrl-exec, so members of group ctrl-exec run the CLI without sudo) and ctrl-exec.crt (CN=ctrl-exec,
825 days, serial at least 01000000 so Perl agents accept it in serial updates).
If a ctrl-exec cert exists and agents are registered, asks for confirmation
first: agents trust the old cert's serial and refuse the new one until they
re-pair. To replace the cert without re-pairing, use rotate-cert.

Exit status: 0 (also when the operator declines); 255 if the CA is missing, the
registry cannot be read, or writing fails.`,
		Action: func(c *cli.Context) error { return setupCtrlExec(e) },
	}
}

func setupCA(e *env, keyType string) error {
	kt, err := pki.ParseKeyType(keyType)
	if err != nil {
		return cliapp.Fatalf("--key-type: %v", err)
	}
	fmt.Fprintln(e.stdout, "Setting up ctrl-exec CA...")
	files := pki.CAFilesIn(e.paths.ConfDir())
	ca, err := pki.CreateCAOfType(files, kt, pki.KeyBitsFromEnv(), e.now())
	if err != nil {
		if errors.Is(err, pki.ErrCAExists) {
			return cliapp.Fatalf("CA already exists at '%s'. Remove it first only if you mean to replace the CA; every agent must then re-pair.", files.Key)
		}
		return cliapp.Fatalf("%v", err)
	}
	// The fingerprint is what agents pin: request-pairing --ca-fingerprint.
	fmt.Fprintf(e.stdout, "CA created:\n  Key:  %s\n  Cert: %s\n  Fingerprint: %s\nKeep ca.key secure - it never leaves this host.\n",
		files.Key, files.Cert, pki.Fingerprint(ca.Cert))
	return nil
}

func setupCtrlExec(e *env) error {
	files := pki.CAFilesIn(e.paths.ConfDir())
	keyPath, certPath := e.paths.CtrlExecKey(), e.paths.CtrlExecCert()
	if _, err := os.Stat(files.Key); errors.Is(err, fs.ErrNotExist) {
		return cliapp.Fatalf("CA key not found at '%s' - run setup-ca first", files.Key)
	}
	// etcd: the new identity is every node's, so the key may only go over
	// a connection fit to carry it. Checked before anything
	// else; a ctrl-exec.conf this user cannot read means the files, as
	// for the registry.
	b, err := e.stateBackend(e.paths.ControlConf(), nil)
	if err != nil && !isUnreadable(e.paths.ControlConf()) {
		return err
	}
	if err := b.IdentityShareable(); err != nil {
		return cliapp.Fatalf("Refusing to replace the ctrl-exec cert: %s: %v", e.paths.ControlConf(), err)
	}
	if info, err := os.Stat(certPath); err == nil && info.Mode().IsRegular() {
		// Fail closed: an unreadable registry may hide paired agents, and
		// the confirmation below is what protects them.
		reg, err := e.registry(e.paths.ControlConf())
		if err != nil {
			return err
		}
		recs, skipped, err := reg.List()
		if err != nil {
			return cliapp.Fatalf("%v - cannot tell whether agents would need re-pairing; not replacing the ctrl-exec cert", err)
		}
		if n := len(recs) + len(skipped); n > 0 {
			plural := "s"
			if n == 1 {
				plural = ""
			}
			// D-6: upstream claimed run/ping keep working; they are
			// serial-checked too, so every operation fails until re-pairing.
			fmt.Fprintln(e.stdout, "WARNING: Existing ctrl-exec cert found.")
			fmt.Fprintf(e.stdout, "  %d registered agent%s will require re-pairing after this operation.\n", n, plural)
			fmt.Fprintln(e.stdout, "  Agents will refuse run, ping and /capabilities from the new cert until re-paired.")
			fmt.Fprintln(e.stdout, "  To replace the cert without re-pairing, use 'ctrl-exec rotate-cert' instead.")
			fmt.Fprint(e.stdout, "\nProceed? [y/N]: ")
			answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
			if a := strings.TrimSpace(answer); a != "y" && a != "Y" {
				fmt.Fprintln(e.stdout, "Aborted.")
				return nil
			}
		} else {
			fmt.Fprintln(e.stdout, "Existing ctrl-exec cert found. No registered agents - replacing.")
		}
	}

	old, err := rotation.SavePair(keyPath, certPath)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}

	fmt.Fprintln(e.stdout, "Generating ctrl-exec certificate...")
	ca, err := pki.LoadCA(files)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	if b != nil {
		ca.Serials = b.Serials
	}
	if _, err := ca.IssueCtrlExecCert(keyPath, certPath, pki.KeyBitsFromEnv(), ctrlExecCertDays, e.now()); err != nil {
		return cliapp.Fatalf("%v", err)
	}
	if err := b.PublishIdentity(e.paths.ConfDir()); err != nil {
		// The other nodes would never get this one, and this node's next
		// sync would undo it: put the old pair back.
		if rerr := old.Restore(); rerr != nil {
			return cliapp.Fatalf("ctrl-exec cert not shared: %v; putting the previous one back also failed: %v", err, rerr)
		}
		return cliapp.Fatalf("ctrl-exec cert not shared, the previous one is kept: %v", err)
	}
	// A new ctrl-exec certificate: no cached TLS session may be offered again.
	rotation.ForgetSessions(nil, e.paths.StateDir(), e.warnSessionCache)()
	fmt.Fprintf(e.stdout, "ctrl-exec cert created:\n  Key:  %s\n  Cert: %s\nRun 'ctrl-exec pairing-mode' to re-pair agents as needed.\n", keyPath, certPath)
	return nil
}
