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

// started records a run in progress (shared backends only); a failure is
// logged as run-store-fail.
func (s runStore) started(rec runstore.Record) {
	if err := s.Started(rec); err != nil {
		s.log.Warn().Str("REQID", rec.ReqID).Str("ERROR", err.Error()).Msg("run-store-fail")
	}
}

// unavailable answers 503 when the state backend (etcd) cannot be reached.
func unavailable(err error) (response, bool) {
	if errors.Is(err, state.ErrUnavailable) {
		return errorResponse(503, "state backend unavailable", err.Error()), true
	}
	return response{}, false
}

// save writes the record; a failure is logged as run-store-fail and does
// not change the answer.
func (s runStore) save(rec runstore.Record) {
	if err := s.Save(rec); err != nil {
		s.log.Warn().Str("REQID", rec.ReqID).Str("ERROR", err.Error()).Msg("run-store-fail")
	}
}
