// Package testknobs holds the settings that exist only for the test suite:
// environment variables that shorten key generation and the timing of
// pairing and rotation. They are read only in a build made with the
// ctrlexec_testknobs tag (the end-to-end harness builds one); the released
// binary compiles Lookup to "" and ignores them, so no environment can weaken
// its keys or bend its clocks.
package testknobs

// The knobs. Each is read where it takes effect; operators have no use for
// any of them.
const (
	// KeyBits is the RSA size (2048–4096) of the keys the process generates.
	KeyBits = "CTRL_EXEC_TEST_KEY_BITS"
	// KeyPool names a directory of pre-generated keys, rsa<bits>-*.pem, each
	// handed to one key generation of that size (see ClaimPooledKey).
	KeyPool = "CTRL_EXEC_TEST_KEY_POOL"
	// Now (an ISO time, e.g. "2030-01-01T00:00:00Z") sets the clock of
	// certificate rotation and its check loop.
	Now = "CTRL_EXEC_TEST_NOW"
	// CheckDelay (a Go duration) replaces the 5 s before the check loop's
	// first pass.
	CheckDelay = "CTRL_EXEC_TEST_CHECK_DELAY"
	// PairingWindow (a Go duration) replaces the 600 s an agent waits for
	// its pairing answer.
	PairingWindow = "CTRL_EXEC_TEST_PAIRING_WINDOW"
	// PairingPoll (a Go duration) replaces pairing-mode's queue poll.
	PairingPoll = "CTRL_EXEC_TEST_PAIRING_POLL"
)

// All lists every knob.
var All = []string{KeyBits, KeyPool, Now, CheckDelay, PairingWindow, PairingPoll}
