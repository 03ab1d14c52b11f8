package dispatch

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// A run keeps at most OutputBudget bytes of replies across its hosts: the
// hosts whose replies come first are kept whole, the rest get a clear error
// and their replies are never read.
func TestRunOutputBudget(t *testing.T) {
	p := sharedPKI(t)
	big := `{"script":"s","exit":0,"stdout":"` + strings.Repeat("o", 100<<10) + `","stderr":"","reqid":"r"}`
	var hosts []string
	for range 5 {
		hosts = append(hosts, startAgent(t, p.Agent, reply(200, big)).Host)
	}
	c, _ := testClient(t)
	c.OutputBudget = int64(2*len(big) + len(big)/2) // room for two replies
	results, err := c.Run(context.Background(), RunRequest{Hosts: hosts, Script: "s", ReqID: testReqID})
	if err != nil {
		t.Fatal(err)
	}
	kept, refused := 0, 0
	for _, r := range results {
		switch {
		case r.Str("stdout") == strings.Repeat("o", 100<<10):
			kept++
		case r.Str("error") == fmt.Sprintf("reply not kept: its %d bytes would take this run's replies over %d bytes in total "+
			"(the script ran; run it on fewer hosts at once to see its output)", len(big), c.OutputBudget):
			if code, _ := r.Exit(); code != -1 {
				t.Errorf("refused reply with exit %d", code)
			}
			refused++
		default:
			t.Errorf("unexpected result %s", r.Str("error"))
		}
	}
	if kept != 2 || refused != 3 {
		t.Errorf("%d replies kept, %d refused; want 2 and 3", kept, refused)
	}

	c.OutputBudget = 0 // the default holds them all
	results, _ = c.Run(context.Background(), RunRequest{Hosts: hosts, Script: "s", ReqID: testReqID})
	for _, r := range results {
		if r.Failed() {
			t.Errorf("default budget: %s", r.Str("error"))
		}
	}
}
