console.log("compat");
