package api

import (
	"errors"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
)

// runStore keeps POST /run answers for GET /status and rerun (§7.8).
type runStore struct {
	state.Runs
	log zerolog.Logger
}

// unavailable answers 503 when the state backend (etcd) cannot be reached.
func unavailable(err error) (response, bool) {
	if errors.Is(err, state.ErrUnavailable) {
		return errorResponse(503, "state backend unavailable", err.Error()), true
	}
	return response{}, false
}

// finish stores the record and lets held's locks go; a failure to store
// is logged as run-store-fail and does not change the answer.
func (s runStore) finish(held state.Run, rec runstore.Record) {
	if err := held.Finish(rec); err != nil {
		s.log.Warn().Str("REQID", rec.ReqID).Str("ERROR", err.Error()).Msg("run-store-fail")
	}
}
