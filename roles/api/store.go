package api

import (
	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
)

// runStore keeps POST /run answers for GET /status and rerun (§7.8).
type runStore struct {
	runstore.Store
	log zerolog.Logger
}

// save writes the record; a failure is logged as run-store-fail and does
// not change the answer.
func (s runStore) save(rec runstore.Record) {
	if err := s.Save(rec); err != nil {
		s.log.Warn().Str("REQID", rec.ReqID).Str("ERROR", err.Error()).Msg("run-store-fail")
	}
}
