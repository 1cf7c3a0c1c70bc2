module connlife/workloads/server

go 1.19
