//go:build tools

// Package flux pins what scripts/flux-tools builds: Flux's CLI and
// controller-gen (the tool directives in go.mod) and the controllers' api
// modules that the CRDs are generated from (imported here). It is never
// built.
package flux

import (
	_ "github.com/fluxcd/image-automation-controller/api/v1"
	_ "github.com/fluxcd/image-reflector-controller/api/v1"
	_ "github.com/fluxcd/notification-controller/api/v1"
	_ "github.com/fluxcd/source-controller/api/v1"
)
