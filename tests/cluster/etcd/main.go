// Command etcd is etcd's own server entry point, built from the pinned
// go.etcd.io/etcd/server/v3 module so that the test control plane needs no
// etcd binary from elsewhere.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
