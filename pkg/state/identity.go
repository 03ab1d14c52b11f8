package state

import (
	"context"
	"errors"
	"fmt"
	"github.com/rs/zerolog"
	"sync"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
)

// sharedRotation is a shared backend's rotation state (a rotation.Store)
// and the ctrl-exec identity it publishes, sealed, with each rotation.
type sharedRotation interface {
	rotation.Store
	// at is the same store with this host's lock beside rotation file.
	at(file string) sharedRotation
	// where names the identity's place for messages.
	where() string
	// keysAllowed is nil when the connection may carry a private key.
	keysAllowed() error
	// sync makes caDir's pair the shared one, validated, under this
	// host's rotation lock; serial is set when files changed.
	sync(caDir string) (serial string, err error)
	// publish makes id the shared identity.
	publish(id *rotation.Identity) error
	// watchIdentity calls changed at once and after each change until ctx ends.
	watchIdentity(ctx context.Context, changed func())
}

// errNoCAKey: this process cannot read ca.key, so it can neither open nor
// seal the shared identity (nor write /etc/ctrl-exec).
var errNoCAKey = errors.New("cannot use the shared ctrl-exec identity without the CA key")

// RotationStore is where the rotation state lives: rotation.json at file
// with the files backend, one key shared by every node with etcd (with
// this host's rotation.lock beside file).
func (b *Backend) RotationStore(file string) rotation.Store {
	if b == nil || b.rotation == nil {
		return rotation.FileStore{Path: file}
	}
	return b.rotation.at(file)
}

// IdentityShareable is nil when rotate-cert and setup-ctrl-exec may make a
// new ctrl-exec identity: always with the files; with etcd only when its
// connection may carry the private key (etcdstate's KeysAllowed) and this
// process can read ca.key, which seals it.
func (b *Backend) IdentityShareable() error {
	if b == nil || b.rotation == nil {
		return nil
	}
	return b.rotation.Shareable()
}

// SyncIdentity makes the ctrl-exec pair in caDir (ctrl-exec.crt and .key,
// and their .prev twins) what the shared backend holds, if it holds one,
// its connection may carry the key, and the pair is valid here (key and
// certificate match, signed by this CA, not older than the rotation
// state's current serial). After a rewrite, serial is the certificate's
// serial ("" when nothing changed). A process that cannot read ca.key
// cannot sync: it says so once. Files: nothing to do.
func (b *Backend) SyncIdentity(caDir string) (serial string, err error) {
	if b == nil || b.rotation == nil || b.rotation.keysAllowed() != nil {
		return "", nil
	}
	serial, err = b.rotation.sync(caDir)
	if errors.Is(err, errNoCAKey) {
		if b.noCAWarned.Swap(true) {
			return "", nil
		}
		return "", fmt.Errorf("this node's ctrl-exec certificate is not kept in step with %s (only a user who can read ca.key and write %s can; run as root): %w",
			b.rotation.where(), caDir, err)
	}
	return serial, err
}

// FollowIdentity is SyncIdentity for a long-running process (the API,
// pairing-mode): now, and again on every change etcd reports (a watch),
// until stop. Each rewrite is logged (ctrl-exec-identity-sync SERIAL=) and
// followed by changed (drop TLS sessions made with the old certificate);
// each failure is logged as ctrl-exec-identity-sync-error. Files: nothing.
func (b *Backend) FollowIdentity(ctx context.Context, caDir string, log zerolog.Logger, changed func()) (stop func()) {
	if b == nil || b.rotation == nil || b.rotation.keysAllowed() != nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		b.rotation.watchIdentity(ctx, func() {
			serial, err := b.SyncIdentity(caDir)
			if err != nil && ctx.Err() == nil {
				log.Warn().Str("ERROR", err.Error()).Msg("ctrl-exec-identity-sync-error")
			}
			if serial != "" {
				log.Info().Str("SERIAL", serial).Msg("ctrl-exec-identity-sync")
				changed()
			}
		})
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
}

// PublishIdentity makes caDir's ctrl-exec pair (just made by
// setup-ctrl-exec) the one every node uses; there is no previous pair.
// Files: nothing to do.
func (b *Backend) PublishIdentity(caDir string) error {
	if b == nil || b.rotation == nil {
		return nil
	}
	id, err := rotation.ReadIdentity(caDir)
	if err != nil {
		return err
	}
	id.PrevCert, id.PrevKey = nil, nil
	return b.rotation.publish(id)
}
