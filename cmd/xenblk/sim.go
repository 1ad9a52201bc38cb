package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// simCmd is the main job. Until the drivers land it reports what is built.
var simCmd = &cobra.Command{
	Use:   "sim",
	Short: "Run a simulated Xen host with our backend serving a disk to our frontend, exported over NBD",
	RunE: func(cmd *cobra.Command, args []string) error {
		fmt.Fprintln(cmd.OutOrStdout(), "xenblk sim: the simulated host and drivers are not built yet; see `issues`.")
		return nil
	},
}

func init() { rootCmd.AddCommand(simCmd) }
