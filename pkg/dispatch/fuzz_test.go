package dispatch

import (
	"testing"
)

// Host arguments: the parts always rebuild the argument.
func FuzzParseTarget(f *testing.F) {
	for _, seed := range []string{"web-01", "web-01:7443", "fe80::1", "[fe80::1]", "[::1]:9443", "[::1]x", ":1", "a:", "[]:1", "[a]:", "h:007443"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		tg := ParseTarget(arg, 7443)
		if tg.Arg != arg || tg.Host == "" && arg != "" || tg.Port == "" || !allDigits(tg.Port) {
			t.Fatalf("ParseTarget(%q) = %#v", arg, tg)
		}
		switch {
		case tg.Host == arg && tg.Port == "7443":
		case tg.Host+":"+tg.Port == arg:
		case "["+tg.Host+"]" == arg && tg.Port == "7443":
		case "["+tg.Host+"]:"+tg.Port == arg:
		default:
			t.Fatalf("ParseTarget(%q) = %#v does not rebuild the argument", arg, tg)
		}
	})
}
