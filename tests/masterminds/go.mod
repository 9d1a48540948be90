module hoist.dev/masterminds

go 1.26.0

// What Flux's image-reflector-controller pins.
require github.com/Masterminds/semver/v3 v3.5.0
