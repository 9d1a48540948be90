// Flux's semver policy loop (image-reflector-controller's SemVer.Latest with
// fluxcd/pkg/version.ParseVersion) on Masterminds/semver, timed over a tag
// corpus, for hoist's policy benchmark to compare against.
//
// Usage: masterminds-bench TAGS_FILE RANGE ROUNDS
// Prints: "<median nanoseconds per selection> <selected tag>"
package main

import (
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

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: masterminds-bench TAGS_FILE RANGE ROUNDS")
		os.Exit(2)
	}
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tags := strings.Split(string(text), "\n")
	c, err := semver.NewConstraint(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	rounds, err := strconv.Atoi(os.Args[3])
	if err != nil || rounds < 1 {
		fmt.Fprintln(os.Stderr, "ROUNDS must be a positive number")
		os.Exit(2)
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
