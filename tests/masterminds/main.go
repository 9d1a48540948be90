// Flux's semver policy loop (image-reflector-controller's SemVer.Latest with
// fluxcd/pkg/version.ParseVersion) on Masterminds/semver: the reference
// hoist's policy engine is checked against (tests/it/masterminds.rs) and
// timed against (benches/policy.rs).
//
// Usage:
//
//	masterminds select
//	    reads cases from stdin, one per line: RANGE<TAB>TAG TAG ...
//	    prints one line per case: the selected tag, "-" when none
//	    qualifies, or "!" when the range does not parse
//	masterminds time TAGS_FILE RANGE ROUNDS
//	    prints "<median nanoseconds per selection> <selected tag>"
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
)

func parseVersion(s string) (*semver.Version, error) {
	if _, err := semver.StrictNewVersion(strings.TrimPrefix(s, "v")); err != nil {
		return nil, err
	}
	return semver.NewVersion(s)
}

func latest(c *semver.Constraints, tags []string) string {
	var best *semver.Version
	var bestTag string
	for _, tag := range tags {
		v, err := parseVersion(tag)
		if err != nil {
			continue
		}
		if c.Check(v) && (best == nil || v.GreaterThan(best)) {
			best = v
			bestTag = tag
		}
	}
	return bestTag
}

func fail(code int, args ...interface{}) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(code)
}

func selectCases() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		parts := strings.SplitN(in.Text(), "\t", 2)
		if len(parts) != 2 {
			fail(2, "a case is RANGE<TAB>TAGS")
		}
		c, err := semver.NewConstraint(parts[0])
		if err != nil {
			fmt.Fprintln(out, "!")
			continue
		}
		selected := latest(c, strings.Fields(parts[1]))
		if selected == "" {
			selected = "-"
		}
		fmt.Fprintln(out, selected)
	}
	if err := in.Err(); err != nil {
		fail(1, err)
	}
}

func timeSelection(file, rangeText, roundsText string) {
	text, err := os.ReadFile(file)
	if err != nil {
		fail(1, err)
	}
	tags := strings.Split(string(text), "\n")
	c, err := semver.NewConstraint(rangeText)
	if err != nil {
		fail(2, err)
	}
	rounds, err := strconv.Atoi(roundsText)
	if err != nil || rounds < 1 {
		fail(2, "ROUNDS must be a positive number")
	}
	selected := latest(c, tags)
	times := make([]time.Duration, rounds)
	for i := range times {
		start := time.Now()
		latest(c, tags)
		times[i] = time.Since(start)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	fmt.Printf("%d %s\n", times[rounds/2].Nanoseconds(), selected)
}

func main() {
	switch {
	case len(os.Args) == 2 && os.Args[1] == "select":
		selectCases()
	case len(os.Args) == 5 && os.Args[1] == "time":
		timeSelection(os.Args[2], os.Args[3], os.Args[4])
	default:
		fail(2, "usage: masterminds select | masterminds time TAGS_FILE RANGE ROUNDS")
	}
}
