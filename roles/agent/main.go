package agent

import "fmt"

// Main is a stub until the role lands.
func Main(prog string, args []string) int {
	fmt.Println(prog, "not implemented yet")
	return 255
}
