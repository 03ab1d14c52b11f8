package config

import "github.com/rs/zerolog"

// LogWarnings logs a loader's non-fatal findings as config-warn lines
// (SPEC §17.2): ENTRY=… for list entries, KEY=… for keys.
func LogWarnings(log zerolog.Logger, warns []Warning) {
	for _, w := range warns {
		ev := log.Warn()
		if w.Entry != "" {
			ev = ev.Str("ENTRY", w.Entry)
		} else {
			ev = ev.Str("KEY", w.Key)
		}
		ev.Str("MSG", w.Msg).Msg("config-warn")
	}
}
